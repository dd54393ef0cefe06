//! Pages of lists: `?limit=&cursor=` in, `{"items": [...], "next_cursor": ...}` out.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The largest page a client can ask for.
pub const MAX_PAGE: usize = 1000;

/// `?limit=&cursor=` of a list with no filters.
#[derive(Deserialize, schemars::JsonSchema)]
pub struct Page {
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// The page size asked for: 100 by default, between 1 and [`MAX_PAGE`].
pub fn limit(asked: Option<usize>) -> usize {
    asked.unwrap_or(100).clamp(1, MAX_PAGE)
}

/// A numeric cursor from a `?cursor=` (an id the previous page ended at).
pub fn id_cursor(cursor: Option<&str>) -> Result<Option<u64>, crate::ApiError> {
    cursor
        .map(|c| {
            c.parse::<u64>()
                .map_err(|_| crate::error::invalid("cursor: not a cursor from this list"))
        })
        .transpose()
}

/// `{"items": [...]}`: a whole list, not paged.
#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "{T}List")]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// A page from up to `limit + 1` records read in order: the extra one only tells that there is
/// a next page, whose cursor is the last record shown.
pub fn page<T, C: Serialize, V: Serialize>(
    found: &[T],
    limit: usize,
    cursor: impl Fn(&T) -> C,
    view: impl Fn(&T) -> V,
) -> Value {
    let next = (found.len() > limit).then(|| cursor(&found[limit - 1]));
    let items: Vec<V> = found.iter().take(limit).map(view).collect();
    json!({ "items": items, "next_cursor": next })
}
