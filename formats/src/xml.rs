//! XML for the formats that use it (VOC, CVAT): escaping for the exporters, and a small element
//! tree for the importers (their files are a few levels deep and read whole).

use quick_xml::events::Event;
use quick_xml::Reader;

/// An element with its attributes, text and children.
#[derive(Debug, Default)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The trimmed text of child `name`.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }
}

/// The deepest nesting a document may have. VOC and CVAT files are five or six levels deep; a
/// limit keeps a hostile document (100,000 nested elements) from building a tree whose drop
/// recurses past the stack.
pub const MAX_DEPTH: usize = 64;

/// Parses a document into its root element.
pub fn parse(text: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = vec![Element::default()];
    let open = |e: &quick_xml::events::BytesStart| -> Result<Element, String> {
        let mut element = Element {
            name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
            ..Element::default()
        };
        for a in e.attributes() {
            let a = a.map_err(|e| e.to_string())?;
            let value = a.unescape_value().map_err(|e| e.to_string())?;
            element.attrs.push((
                String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                value.into_owned(),
            ));
        }
        Ok(element)
    };
    loop {
        match reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?
        {
            Event::Start(e) => {
                // The bottom of the stack is the document, not an element.
                if stack.len() > MAX_DEPTH {
                    return Err(format!(
                        "at byte {}: elements are nested deeper than {MAX_DEPTH} levels",
                        reader.buffer_position()
                    ));
                }
                stack.push(open(&e)?)
            }
            Event::Empty(e) => {
                let element = open(&e)?;
                if let Some(parent) = stack.last_mut() {
                    parent.children.push(element);
                }
            }
            Event::End(_) => {
                let done = stack.pop().ok_or("unbalanced end tag")?;
                stack
                    .last_mut()
                    .ok_or("unbalanced end tag")?
                    .children
                    .push(done);
            }
            Event::Text(t) => {
                if let Some(current) = stack.last_mut() {
                    current
                        .text
                        .push_str(&t.unescape().map_err(|e| e.to_string())?);
                }
            }
            Event::CData(t) => {
                if let Some(current) = stack.last_mut() {
                    current.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let mut document = stack.pop().ok_or("empty document")?;
    if !stack.is_empty() {
        return Err("the document ends inside an element".into());
    }
    document
        .children
        .pop()
        .ok_or_else(|| "no root element".to_string())
}

/// `text` with `&`, `<`, `>`, `"` and `'` escaped, and control characters XML 1.0 cannot
/// carry dropped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_a_small_tree() {
        let root = super::parse("<?xml version=\"1.0\"?><a x=\"1\"><b>t &amp; u</b><c y='2'/></a>")
            .unwrap();
        assert_eq!((root.name.as_str(), root.attr("x")), ("a", Some("1")));
        assert_eq!(root.text_of("b"), Some("t & u"));
        assert_eq!(root.child("c").and_then(|c| c.attr("y")), Some("2"));
        assert!(super::parse("<a><b></a>").is_err());
    }

    #[test]
    fn refuses_documents_nested_deeper_than_the_limit() {
        let nested = |depth: usize| format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth));
        assert!(super::parse(&nested(super::MAX_DEPTH)).is_ok());
        let err = super::parse(&nested(100_000)).unwrap_err();
        assert!(err.contains("nested deeper than 64 levels"), "{err}");
    }

    #[test]
    fn escapes_markup_and_drops_control_characters() {
        assert_eq!(
            super::escape("a<b & \"c\"\u{1}"),
            "a&lt;b &amp; &quot;c&quot;"
        );
    }
}
