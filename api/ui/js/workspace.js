// The annotation workspace: a task's images one at a time on the canvas editor, with tools,
// labels and attributes, the object list, autosave under the version protocol (If-Match; a 412
// opens the conflict dialog), prefetching of the next images, review (comments pinned at points,
// accept, reject with a reason) and keyboard shortcuts.
//
// Unsaved edits are kept in IndexedDB (unsaved.js) from the moment they are made until a save of
// exactly them succeeds. A save that fails for want of the server (network, 5xx) is retried with
// backoff, and sooner when another save gets through or the browser is back online; the bar
// says how many images are not saved, and submitting waits until none are (or the user
// discards them).

import { api, ApiError, atLeast, currentSession, sized } from './api.js';
import { clean, Editor, NOT_LABELLED, OCCLUDED, shapeText, snapshot, VISIBILITY_NAMES, VISIBLE, visibilityOf, withIds } from './editor.js';
import { clear, fmtTime, h, modal, stateBadge, toast } from './dom.js';
import { patchBody } from './patch.js';
import { drop, keep, pending } from './unsaved.js';

const TOOLS = [
  ['select', 'Select', 'V'], ['rectangle', 'Rect', 'R'], ['rotated_rectangle', 'Rotated', 'T'],
  ['polygon', 'Polygon', 'P'], ['polyline', 'Line', 'L'], ['points', 'Points', 'K'], ['comment', 'Comment', 'C'],
];
const KEY_TOOL = Object.fromEntries(TOOLS.map(([t, , k]) => [k.toLowerCase(), t]));
const AUTOSAVE_MS = 700;
/** IndexedDB gets a changed image this long after its last change (and at once before a save). */
const PERSIST_MS = 250;
/** The object list shows this many shapes (and the selected one); the filter finds the rest. */
const LIST_MAX = 300;
const PREFETCH = 3;
/** Retries of saves the server did not get: 1 s, doubling, at most this far apart. */
const RETRY_MAX_MS = 10_000;
const CONNECTION_LOST = 'Connection to the server lost; your work is kept and will be saved when it is back.';

/** Whether a failed save may succeed later unchanged: the server was unreachable or unwell. */
const retryable = (e) => !(e instanceof ApiError) || e.status === 0 || e.status === 408 || e.status === 429 || e.status >= 500;
const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

const SHORTCUTS = [
  ['V R T P L K', 'Select, rectangle, rotated rectangle, polygon, polyline, keypoints'],
  ['C', 'Comment at a point (review)'],
  ['1 – 9', 'Choose a label (and relabel the selected shape)'],
  ['D or →, A or ←', 'Next, previous image'],
  ['Enter', 'Finish a polygon, polyline or keypoints'],
  ['O or Shift+click', 'Keypoints: place the next one as occluded; on a set, toggle the selected keypoint occluded ⇄ visible'],
  ['N', 'Keypoints: skip the next one (not in the image); on a set, make the selected keypoint not labelled'],
  ['Click a keypoint', 'Select it (its set, its row in the Keypoints panel); a not-labelled one chosen there is placed by the next click'],
  ['Backspace', 'Remove the last point of the shape being drawn'],
  ['Esc', 'Cancel drawing, deselect'],
  ['Delete', 'Delete the selected shape'],
  ['Double-click an edge, a vertex', 'Add a vertex there, remove it (selected polygon or polyline)'],
  ['Ctrl+C, Ctrl+V', 'Copy the selected shape (all shapes when none is), paste onto this image'],
  ['H', 'Hide or show the selected shape'],
  ['Q', 'Mark the selected shape occluded (partly hidden behind another object; drawn dashed), or not'],
  ['[ ]', 'Rotate the selected rotated rectangle by 5°'],
  ['Ctrl+Z, Ctrl+Shift+Z (Ctrl+Y)', 'Undo, redo'],
  ['Ctrl+S', 'Save now'],
  ['F', 'Fit the image to the screen'],
  ['+ / − or wheel', 'Zoom'],
  ['Space + drag, middle or right drag', 'Pan'],
  ['?', 'This help'],
];

export async function render(el, [taskId], ctx) {
  const me = currentSession().username;
  let task = await api(`/api/v1/tasks/${taskId}`);
  const labels = task.labels || (await api(`/api/v1/annotation-sets/${task.annotation_set}`)).labels;
  let comments = [];
  // What an earlier visit (or a reload) could not save, by image: restored as each is loaded.
  const queued = new Map((await pending(me, taskId).catch(() => [])).map((e) => [e.sha, e]));
  // Where reviewers go back to: managers to the set's task list, reviewers to their queue.
  const reviewHome = () => (atLeast('manager') ? `/sets/${task.annotation_set}/tasks` : '/review');
  const mode = () => (task.state === 'in_progress' && task.assignee === me ? 'annotate'
    : task.state === 'in_review' && (task.reviewer === me || atLeast('manager')) ? 'review' : 'view');

  // --- per-image state: {sha, url, img, version, shapes, saved, saving, error, history}; `rev`
  // counts changes to `shapes`, so their JSON is made once per change, not once per question.
  // `base` is {version, parts}: a version of the server's and its shapes' JSON texts, one per
  // shape, which a save may send the changes from (PATCH) instead of every shape (PUT).
  const images = task.images.map((i, n) => ({ ...i, n, version: 0, shapes: null, saved: '[]', rev: 0, base: null, history: { undo: [], redo: [] } }));
  const textOf = (im) => {
    if (im.textRev !== im.rev) {
      im.parts = im.shapes.map(shapeText);
      im.text = `[${im.parts.join(',')}]`;
      im.textRev = im.rev;
    }
    return im.text;
  };
  /** The shapes are those of the server's `version`. */
  const markSaved = (im, version) => {
    im.version = version;
    im.saved = textOf(im);
    im.base = { version, parts: im.parts };
  };
  /** Replaces an image's shapes (loaded, restored, theirs, discarded). */
  const setShapes = (im, shapes) => {
    const fresh = withIds(shapes);
    if (!im.shapes) im.shapes = fresh;
    else {
      // The same array: the editor holds it. Pushed one by one (no argument-count limit).
      im.shapes.length = 0;
      for (const x of fresh) im.shapes.push(x);
    }
    im.rev++;
  };
  const fetchImage = (im, url) => new Promise((resolve, reject) => {
    const img = new Image();
    img.decoding = 'async';
    img.onload = () => img.decode().catch(() => {}).then(() => resolve(img));
    img.onerror = () => reject(new Error(`image ${im.sha256.slice(0, 12)} did not load`));
    img.src = url;
  });
  // The preview first (longest side 1280 px): a huge original is decoded only when zoom asks
  // for it (`sharper`); an image the server cannot preview falls back to the original.
  const loadImage = (im) => (im.imgP ??= fetchImage(im, sized(im.url, 'preview')).catch(() => loadOriginal(im)));
  const loadOriginal = (im) => (im.fullP ??= fetchImage(im, im.url));
  const loadShapes = (im) => (im.shapesP ??= api(`/api/v1/tasks/${taskId}/images/${im.sha256}/annotations`).then((a) => {
    setShapes(im, a.shapes || []);
    markSaved(im, a.version);
    im.savedBy = a.saved_by;
    restore(im);
    markStrip(im);
  }));
  // Puts back the shapes a failed save left in IndexedDB, made on version `base`: saved on top of
  // it when it is still current, else the conflict dialog asks (nothing is dropped silently).
  function restore(im) {
    const q = queued.get(im.sha256);
    if (!q) return;
    queued.delete(im.sha256);
    if (q.text === im.saved) { drop(me, taskId, im.sha256).catch(() => {}); return; }
    im.version = q.base;
    setShapes(im, JSON.parse(q.text));
    im.offline = true;
    setTimeout(() => save(im), 0);
  }
  const prefetch = (from) => {
    for (let i = from; i < Math.min(images.length, from + PREFETCH + 1); i++) {
      loadImage(images[i]).catch(() => {});
      loadShapes(images[i]).catch(() => {});
    }
  };
  let current = null;

  // --- layout
  main(el, true);
  const canvas = h('canvas', { id: 'canvas', tabindex: '0', 'aria-label': 'Image canvas: draw with the mouse; press ? for shortcuts' });
  const stage = h('div', { class: 'ws-stage' }, canvas);
  // A tool no label of the schema is drawn with is greyed out.
  const usable = (t) => t === 'select' || t === 'comment' || labels.some((l) => l.kinds.includes(t));
  const toolButtons = TOOLS.map(([t, text, k]) => h('button', {
    type: 'button', 'data-tool': t, 'aria-pressed': 'false', 'aria-keyshortcuts': k, disabled: !usable(t),
    title: usable(t) ? `${text} (${k})` : `${text}: no label of this schema is drawn as ${t.replace('_', ' ')}`,
  }, text));
  const tools = h('div', { class: 'ws-tools', role: 'toolbar', 'aria-label': 'Tools', 'aria-orientation': 'vertical' }, toolButtons,
    h('hr'), h('button', { type: 'button', id: 'zoom-in', title: 'Zoom in (+)' }, '+'), h('button', { type: 'button', id: 'zoom-out', title: 'Zoom out (−)' }, '−'),
    h('button', { type: 'button', id: 'fit', title: 'Fit (F)' }, 'Fit'),
    h('button', { type: 'button', id: 'undo', title: 'Undo (Ctrl+Z)' }, 'Undo'), h('button', { type: 'button', id: 'redo', title: 'Redo (Ctrl+Shift+Z)' }, 'Redo'),
    h('button', { type: 'button', id: 'help', title: 'Shortcuts (?)' }, '?'));
  const saveState = h('span', { class: 'save-state saved', id: 'save-state', role: 'status', 'aria-live': 'polite' }, 'saved');
  const position = h('span', { id: 'position' });
  const imageName = h('span', { id: 'image-name', class: 'image-name' });
  const stateBox = h('span', null, stateBadge(task.state));
  const zoomText = h('span', { class: 'muted', id: 'zoom' });
  const draftHint = h('span', { class: 'hint', id: 'draft-hint', 'aria-live': 'polite' });
  const unsavedText = h('span', { id: 'unsaved-text' });
  const discardButton = h('button', { type: 'button', id: 'discard', class: 'danger', title: 'Go back to the last saved version of these images' }, 'Discard…');
  const unsavedBox = h('span', { class: 'unsaved', id: 'unsaved', role: 'status', 'aria-live': 'polite', hidden: true }, unsavedText, discardButton);
  const barActions = h('span', { class: 'row' });
  const bar = h('div', { class: 'ws-bar' },
    h('a', { href: task.assignee === me ? '/my-tasks' : reviewHome(), 'data-link': true }, '← Back'),
    h('strong', null, `Task #${task.id}`), stateBox, position, imageName,
    h('button', { type: 'button', id: 'prev', title: 'Previous image (A)' }, '← Prev'), h('button', { type: 'button', id: 'next', title: 'Next image (D)' }, 'Next →'),
    zoomText, draftHint, unsavedBox, saveState, barActions);
  const labelList = h('ul', { class: 'labels-list', id: 'labels', 'aria-label': 'Labels' });
  const tagBox = h('div', { id: 'tags' });
  const attrBox = h('div', { id: 'attributes' });
  const keypointBox = h('div', { id: 'keypoint-panel' });
  const objectList = h('ul', { class: 'objects-list', id: 'objects', 'aria-label': 'Objects' });
  const objectFilter = h('input', { type: 'search', id: 'object-filter', placeholder: 'filter by label', 'aria-label': 'Filter objects by label' });
  objectFilter.addEventListener('input', () => renderObjects());
  const slider = (id, text, min, max, value) => {
    const input = h('input', { type: 'range', id, min, max, value });
    return [input, h('label', { class: 'look' }, h('span', null, text), input)];
  };
  const [brightness, brightnessField] = slider('brightness', 'Brightness', 20, 300, 100);
  const [contrast, contrastField] = slider('contrast', 'Contrast', 20, 300, 100);
  const [opacity, opacityField] = slider('shape-opacity', 'Shape fill', 0, 100, 15);
  const lookBox = h('details', { class: 'look-box' }, h('summary', null, 'View'), brightnessField, contrastField, opacityField);
  const commentList = h('ul', { class: 'comments-list', id: 'comments', 'aria-label': 'Review comments' });
  const side = h('aside', { class: 'ws-side', 'aria-label': 'Labels and objects' },
    h('h2', null, 'Labels'), labelList, tagBox, h('h2', null, 'Selected'), attrBox, keypointBox,
    h('h2', null, 'Objects'), objectFilter, objectList, h('h2', null, 'Comments'), commentList, lookBox);
  const strip = h('nav', { class: 'ws-strip', id: 'strip', 'aria-label': 'Images of this task' });
  const ws = h('div', { class: 'ws' }, bar, tools, stage, side, strip);
  el.append(ws);

  // --- labels
  let currentLabel = labels[0]?.name;
  function renderLabels() {
    clear(labelList);
    labels.forEach((l, i) => {
      const b = h('button', { type: 'button', 'aria-pressed': String(l.name === currentLabel), title: `${l.kinds.join(', ')} (${i + 1})`, dataset: { label: l.name } },
        h('span', { class: 'swatch', style: { background: l.color } }), i < 9 ? h('kbd', null, i + 1) : null, l.name);
      b.addEventListener('click', () => chooseLabel(i));
      labelList.append(h('li', null, b));
    });
  }
  function chooseLabel(i) {
    const l = labels[i];
    if (!l) return;
    currentLabel = l.name;
    renderLabels();
    const s = editor.selectedShape();
    if (s && s.label !== l.name && l.kinds.includes(s.kind) && !editor.readOnly) {
      editor.update(s, (x) => { x.label = l.name; delete x.attributes; });
    }
  }

  // --- the editor
  const editor = new Editor(canvas, labels, {
    change: () => { if (current) { current.rev++; renderObjectsOnce(); scheduleSave(current); markStrip(current); } },
    select: (s) => { renderAttributes(s); renderKeypoints(); renderObjectsOnce(); },
    draft: (t) => { draftHint.textContent = t; renderKeypoints(); },
    comment: (x, y) => addComment(x, y),
    toast: (m) => toast(m),
    label: () => currentLabel,
    sharper: () => {
      const im = current;
      if (!im || im.fullP) return;
      loadOriginal(im).then((img) => { if (current === im) editor.setImage(img); }).catch((e) => toast(e.message, 'error'));
    },
  });
  window.tessera.editor = editor;
  const applyLook = () => {
    editor.look = { brightness: Number(brightness.value), contrast: Number(contrast.value), opacity: Number(opacity.value) / 100 };
    editor.invalidate();
  };
  for (const input of [brightness, contrast, opacity]) input.addEventListener('input', applyLook);
  // Written only when it changes: a text written anew makes the page lay out again.
  const zoomLoop = setInterval(() => {
    const text = `${Math.round(editor.scale * 100)}%`;
    if (zoomText.textContent !== text) zoomText.textContent = text;
  }, 250);

  function setTool(t) {
    if (t === 'comment' && mode() !== 'review') { toast('Comments are for reviewers'); return; }
    if (t !== 'select' && t !== 'comment' && editor.readOnly) { toast('This task is read-only now'); return; }
    if (!usable(t)) { toast(`No label of this schema is drawn as ${t.replace('_', ' ')}`); return; }
    editor.setTool(t);
    for (const b of toolButtons) b.setAttribute('aria-pressed', String(b.dataset.tool === t));
  }
  for (const b of toolButtons) b.addEventListener('click', () => setTool(b.dataset.tool));
  tools.querySelector('#zoom-in').addEventListener('click', () => editor.zoom(1.25));
  tools.querySelector('#zoom-out').addEventListener('click', () => editor.zoom(0.8));
  tools.querySelector('#fit').addEventListener('click', () => editor.fit());
  tools.querySelector('#undo').addEventListener('click', () => editor.undo());
  tools.querySelector('#redo').addEventListener('click', () => editor.redo());
  tools.querySelector('#help').addEventListener('click', showHelp);
  bar.querySelector('#prev').addEventListener('click', () => go(current.n - 1));
  bar.querySelector('#next').addEventListener('click', () => go(current.n + 1));

  // --- tags (image-level labels)
  function renderTags() {
    clear(tagBox);
    const tagLabels = labels.filter((l) => l.kinds.includes('tag'));
    if (!tagLabels.length || !current?.shapes) return;
    tagBox.append(h('h2', null, 'Image tags'));
    for (const l of tagLabels) {
      const on = current.shapes.some((s) => s.kind === 'tag' && s.label === l.name);
      const box = h('input', { type: 'checkbox', checked: on, disabled: editor.readOnly });
      box.addEventListener('change', () => {
        if (box.checked) editor.add({ label: l.name, kind: 'tag', points: [] });
        else {
          const i = current.shapes.findIndex((s) => s.kind === 'tag' && s.label === l.name);
          editor.checkpoint(i >= 0 ? [current.shapes[i]] : []);
          if (i >= 0) current.shapes.splice(i, 1);
          editor.changed();
        }
      });
      tagBox.append(h('label', { style: { display: 'block' } }, box, ' ', h('span', { class: 'swatch', style: { background: l.color } }), ' ', l.name));
    }
  }

  // --- the selected shape's label and attributes
  function renderAttributes(s) {
    clear(attrBox);
    if (!s) { attrBox.append(h('p', { class: 'muted' }, 'Nothing selected.')); return; }
    const ro = editor.readOnly;
    const label = labels.find((l) => l.name === s.label);
    const labelSel = h('select', { id: 'shape-label', disabled: ro },
      labels.filter((l) => l.kinds.includes(s.kind)).map((l) => h('option', { value: l.name, selected: l.name === s.label }, l.name)));
    labelSel.addEventListener('change', () => editor.update(s, (x) => { x.label = labelSel.value; delete x.attributes; }));
    attrBox.append(h('label', { class: 'field' }, h('span', null, `${s.kind.replace('_', ' ')} label`), labelSel));
    if (s.kind !== 'tag') {
      const front = h('button', { type: 'button', id: 'to-front', disabled: ro }, 'Bring to front');
      const back = h('button', { type: 'button', id: 'to-back', disabled: ro }, 'Send to back');
      front.addEventListener('click', () => editor.restack(true));
      back.addEventListener('click', () => editor.restack(false));
      const occluded = h('button', {
        type: 'button', id: 'shape-occluded', 'aria-pressed': String(!!s.occluded), 'aria-keyshortcuts': 'Q', disabled: ro,
        title: 'Partly hidden behind another object (Q); drawn dashed',
      }, 'Occluded');
      occluded.addEventListener('click', () => editor.toggleShapeOccluded());
      attrBox.append(h('div', { class: 'row' }, front, back, occluded));
    }
    if (s.kind === 'rotated_rectangle') {
      const angle = h('input', { type: 'number', min: 0, max: 359, step: 1, value: s.angle || 0, id: 'shape-angle', disabled: ro });
      angle.addEventListener('change', () => editor.update(s, (x) => { x.angle = ((Number(angle.value) % 360) + 360) % 360; }));
      attrBox.append(h('label', { class: 'field' }, h('span', null, 'Angle (degrees)'), angle));
    }
    for (const a of label?.attributes || []) {
      const value = s.attributes?.[a.name];
      let input;
      const set = (v) => editor.update(s, (x) => {
        x.attributes = { ...(x.attributes || {}) };
        if (v === undefined) delete x.attributes[a.name]; else x.attributes[a.name] = v;
      });
      if (a.type === 'select') {
        input = h('select', { disabled: ro, 'data-attr': a.name }, a.required ? null : h('option', { value: '' }, '—'),
          a.options.map((o) => h('option', { value: o, selected: o === value }, o)));
        input.addEventListener('change', () => set(input.value === '' ? undefined : input.value));
      } else if (a.type === 'checkbox') {
        input = h('input', { type: 'checkbox', checked: !!value, disabled: ro, 'data-attr': a.name });
        input.addEventListener('change', () => set(input.checked));
      } else if (a.type === 'number') {
        input = h('input', { type: 'number', value: value ?? '', min: a.min ?? null, max: a.max ?? null, disabled: ro, 'data-attr': a.name });
        input.addEventListener('change', () => set(input.value === '' ? undefined : Number(input.value)));
      } else {
        input = h('input', { value: value ?? '', disabled: ro, 'data-attr': a.name });
        input.addEventListener('change', () => set(input.value));
      }
      attrBox.append(h('label', { class: 'field' }, h('span', null, a.name + (a.required ? ' *' : '')), input));
    }
  }

  // --- the keypoints of the set being placed or selected, by name, with their visibility
  function renderKeypoints() {
    clear(keypointBox);
    const d = editor.draft?.kind === 'points' ? editor.draft : null;
    const s = d ? null : editor.selectedShape();
    const set = d || (s?.kind === 'points' ? s : null);
    if (!set) return;
    const names = labels.find((l) => l.name === set.label)?.keypoints || [];
    const nameOf = (i) => names[i] || `point ${i + 1}`;
    const list = h('ul', { class: 'keypoints-list', id: 'keypoints', 'aria-label': 'Keypoints' });
    keypointBox.append(h('h2', null, 'Keypoints'), list);
    if (d) draftKeypoints(d, names, nameOf, list);
    else setKeypoints(s, nameOf, list);
  }
  const stateText = (v) => h('span', { class: `kp-state ${VISIBILITY_NAMES[v].replace(' ', '-')}` }, VISIBILITY_NAMES[v]);
  /** While a set is placed: what is placed so far, which is next, and the O and N buttons. */
  function draftKeypoints(d, names, nameOf, list) {
    const count = Math.max(names.length, d.points.length);
    for (let i = 0; i < count; i++) {
      const next = i === d.points.length;
      const state = i < d.points.length ? stateText(d.visibility[i])
        : h('span', { class: 'kp-state' }, next ? `next${editor.occludeNext ? ': occluded' : ''}` : '—');
      list.append(h('li', { class: next ? 'chosen' : null, dataset: { keypoint: String(i) } }, h('span', { class: 'name' }, nameOf(i)), state));
    }
    const occlude = h('button', { type: 'button', id: 'occlude-next', 'aria-pressed': String(editor.occludeNext), 'aria-keyshortcuts': 'O' }, 'Next occluded (O)');
    occlude.addEventListener('click', () => editor.toggleOccluded());
    const skip = h('button', { type: 'button', id: 'skip-keypoint', 'aria-keyshortcuts': 'N', disabled: !names.length }, 'Not in image (N)');
    skip.addEventListener('click', () => editor.skipKeypoint());
    keypointBox.append(h('div', { class: 'row' }, occlude, skip));
  }
  /** A finished set: each keypoint chosen by its name, its visibility set by a select. */
  function setKeypoints(s, nameOf, list) {
    const ro = editor.readOnly || !!s._locked;
    s.points.forEach((_, i) => {
      const v = visibilityOf(s, i);
      const chosen = editor.keypoint === i;
      const name = h('button', { type: 'button', class: 'name', 'aria-pressed': String(chosen) }, nameOf(i));
      name.addEventListener('click', () => editor.chooseKeypoint(i));
      const select = h('select', { 'aria-label': `${nameOf(i)} visibility`, 'data-keypoint': String(i), disabled: ro },
        [VISIBLE, OCCLUDED, NOT_LABELLED].map((x) => h('option', { value: String(x), selected: x === v }, VISIBILITY_NAMES[x])));
      select.addEventListener('change', () => editor.setKeypointVisibility(i, Number(select.value)));
      const place = chosen && v === NOT_LABELLED && !ro
        ? h('span', { class: 'kp-state', id: 'place-keypoint' }, `click the image to place it${editor.placeAs === OCCLUDED ? ' (occluded)' : ''}`) : null;
      list.append(h('li', { class: chosen ? 'chosen' : null, dataset: { keypoint: String(i), visibility: String(v) } }, name, select, place));
    });
  }

  // --- object list with visibility toggles
  /** The object list rendered once at the end of this task (an edit both changes and selects). */
  let objectsQueued = false;
  function renderObjectsOnce() {
    if (objectsQueued) return;
    objectsQueued = true;
    queueMicrotask(() => { objectsQueued = false; renderObjects(); });
  }
  /**
   * The rows on show, by shape object, with the text of what each shows: an edit, a selection
   * or an undo makes new rows only for the shapes whose row would read differently, and moves
   * no row that stays in place (a list of hundreds of rows rebuilt on every edit of an image of
   * thousands of shapes costs more than the edit).
   */
  let rows = new Map();
  function row(s, i) {
    const sel = s._id === editor.selected;
    const key = [i, s.label, s.kind, sel, !!s._hidden, !!s._locked, !!s.occluded, editor.readOnly].join('\u0000');
    const old = rows.get(s);
    if (old?.key === key) return old;
    const color = labels.find((l) => l.name === s.label)?.color || '#888';
    const vis = h('button', { type: 'button', class: 'vis', 'aria-pressed': String(!s._hidden), title: s._hidden ? 'Show' : 'Hide' }, s._hidden ? 'show' : 'hide');
    vis.addEventListener('click', () => { s._hidden = !s._hidden; editor.reshow(s); renderObjects(); });
    const name = h('button', { type: 'button', class: 'name', 'aria-pressed': String(sel) }, h('span', { class: 'swatch', style: { background: color } }),
      ` ${i + 1}. ${s.label} · ${s.kind.replace('_', ' ')}${s.occluded ? ' · occluded' : ''}`);
    name.addEventListener('click', () => editor.select(s._id));
    // Locked shapes are selected but never moved, reshaped or deleted by accident (not saved).
    const lock = h('button', { type: 'button', class: 'vis', 'aria-pressed': String(!!s._locked), 'aria-label': `Lock ${s.label} ${i + 1}`, title: s._locked ? 'Unlock' : 'Lock' }, s._locked ? 'locked' : 'lock');
    lock.addEventListener('click', () => { s._locked = !s._locked; editor.reshow(s); renderObjects(); });
    const del = h('button', { type: 'button', class: 'vis', title: 'Delete', 'aria-label': `Delete ${s.label} ${i + 1}`, disabled: editor.readOnly || !!s._locked }, '✕');
    del.addEventListener('click', () => { editor.select(s._id); editor.deleteSelected(); });
    const li = h('li', { class: sel ? 'selected' : null, dataset: { kind: s.kind, label: s.label, occluded: String(!!s.occluded) } }, name, lock, vis, del);
    return { key, li };
  }
  function renderObjects() {
    if (!current?.shapes) { clear(objectList); rows = new Map(); return; }
    renderTags();
    const wanted = objectFilter.value.trim().toLowerCase();
    const next = new Map();
    const nodes = [];
    let more = 0;
    current.shapes.forEach((s, i) => {
      if (wanted && !s.label.toLowerCase().includes(wanted)) return;
      if (nodes.length >= LIST_MAX && s._id !== editor.selected) { more++; return; }
      const r = row(s, i);
      next.set(s, r);
      nodes.push(r.li);
    });
    rows = next;
    if (!current.shapes.length) nodes.push(h('li', { class: 'muted' }, 'No shapes yet.'));
    else if (!nodes.length) nodes.push(h('li', { class: 'muted' }, `No ${wanted} shapes.`));
    if (more) nodes.push(h('li', { class: 'muted' }, `${more} more: filter by label, or select one on the canvas.`));
    // Rows no longer shown go first, so the ones kept are already in order but for new ones.
    const shown = new Set(nodes);
    for (const child of [...objectList.children]) if (!shown.has(child)) child.remove();
    nodes.forEach((li, at) => { if (objectList.children[at] !== li) objectList.insertBefore(li, objectList.children[at] || null); });
  }

  // --- thumbnails strip
  function renderStrip() {
    clear(strip);
    for (const im of images) {
      const b = h('button', { type: 'button', 'aria-label': `Image ${im.n + 1}${im.name ? `: ${im.name}` : ''}`, title: im.name || null, 'aria-current': String(im === current), dataset: { n: String(im.n) } },
        h('img', { src: sized(im.url, 'thumb'), alt: '', loading: 'lazy', width: 90, height: 70 }));
      b.addEventListener('click', () => go(im.n));
      strip.append(b);
      markStrip(im);
    }
  }
  function markStrip(im) {
    const b = strip.children[im.n];
    if (!b) return;
    b.setAttribute('aria-current', String(im === current));
    b.querySelector('.dot')?.remove();
    if (failed(im)) b.append(h('span', { class: 'dot unsaved', title: 'not saved' }));
    else if (im.shapes?.length) b.append(h('span', { class: 'dot', title: 'annotated' }));
    b.querySelector('.comment-mark')?.remove();
    const open = comments.filter((c) => c.sha256 === im.sha256 && c.parent == null && !c.resolved_by).length;
    if (open) b.append(h('span', { class: 'comment-mark', title: `${open} open comments` }, String(open)));
  }

  // --- autosave under the version protocol
  const dirty = (im) => im.shapes && textOf(im) !== im.saved;
  /**
   * Whether to show an image as unsaved: changed since its text was last made (thousands of
   * shapes take tens of ms to serialise: the save does it, not every edit), or dirty.
   */
  const unsaved = (im) => (im.shapes && im.textRev !== im.rev) || dirty(im);
  /** Changes a save attempt did not get to the server. */
  const failed = (im) => (im.offline || im.error) && dirty(im);
  function showSaveState() {
    renderUnsaved();
    const im = current;
    if (!im) return;
    const [cls, text] = im.conflict ? ['error', 'conflict'] : im.error ? ['error', `not saved: ${im.error}`]
      : im.saving ? ['saving', 'saving…'] : failed(im) ? ['error', 'not saved — retrying']
        : unsaved(im) ? ['dirty', 'unsaved changes'] : ['saved', `saved · v${im.version}`];
    saveState.className = `save-state ${cls}`;
    saveState.textContent = text;
    saveState.dataset.version = String(im.version);
  }
  function renderUnsaved() {
    const list = images.filter(failed);
    unsavedBox.hidden = !list.length;
    if (!list.length) return;
    const retrying = list.some((im) => im.offline);
    unsavedText.textContent = `${plural(list.length, 'image', 'images')} not saved${retrying ? ' — retrying' : ''}`;
    unsavedBox.title = retrying ? CONNECTION_LOST : list.find((im) => im.error).error;
  }
  // Every change is in IndexedDB before anything else happens to it; a save of exactly these
  // shapes removes it (transactions run in the order they are opened).
  let storageWarned = false;
  function persist(im) {
    clearTimeout(im.persistTimer);
    const done = dirty(im)
      ? keep({ user: me, task: taskId, sha: im.sha256, base: im.version, text: textOf(im) })
      : drop(me, taskId, im.sha256);
    done.catch((e) => {
      if (!storageWarned) toast(`This browser cannot keep unsaved work (${e?.message || e}); stay online until "saved" shows`, 'error', 10_000);
      storageWarned = true;
    });
  }
  let attempts = 0;
  let retryTimer = null;
  let warned = false;
  function scheduleRetry() {
    if (retryTimer) return;
    const delay = Math.min(RETRY_MAX_MS, 1000 * 2 ** attempts) * (0.75 + Math.random() / 2);
    attempts++;
    retryTimer = setTimeout(retryNow, delay);
  }
  function retryNow() {
    clearTimeout(retryTimer);
    retryTimer = null;
    for (const im of images) if (im.offline && !im.saving && !im.conflict) save(im);
  }
  window.addEventListener('online', retryNow);
  function scheduleSave(im) {
    im.error = null;
    clearTimeout(im.persistTimer);
    im.persistTimer = setTimeout(() => persist(im), PERSIST_MS);
    clearTimeout(im.timer);
    im.timer = setTimeout(() => save(im), AUTOSAVE_MS);
    showSaveState();
  }
  async function save(im, { base } = {}) {
    clearTimeout(im.timer);
    if (im.saving) { im.again = true; return im.saving; }
    if (!dirty(im) && base === undefined) { im.offline = false; persist(im); showSaveState(); markStrip(im); return; }
    persist(im);
    const text = textOf(im);
    const { parts } = im;
    const edited = base ?? im.version;
    // Only what changed since the version edited, when its shapes are known here and that is
    // smaller (an image saved for the first time, or with most shapes changed, goes whole).
    const full = `{"shapes":${text}}`;
    const patch = edited > 0 && im.base?.version === edited ? patchBody(im.base.parts, parts) : null;
    const send = (method, body) => api(`/api/v1/tasks/${taskId}/images/${im.sha256}/annotations`, {
      method, body, headers: { 'content-type': 'application/json', 'if-match': `"${edited}"` }, full: true, accept: [412, 422],
    });
    im.saving = (async () => {
      try {
        let r = patch && patch.length < full.length ? await send('PATCH', patch) : null;
        // A patch the server cannot apply goes whole: the full save is the judge of the shapes.
        if (!r || r.status === 422) r = await send('PUT', full);
        if (r.status === 422) throw new ApiError(422, r.body?.error?.code || 'http_422', r.body?.error?.message || 'not saved', r.body);
        if (r.status === 412) {
          im.conflict = true;
          showSaveState();
          await resolveConflict(im, r.body?.current_version);
          return;
        }
        im.version = r.body.version;
        im.saved = text;
        im.base = { version: r.body.version, parts };
        im.error = null;
        im.offline = false;
        // The server is back: what waits for a retry need not wait any longer.
        attempts = 0;
        warned = false;
        if (images.some((x) => x.offline)) retryNow();
      } catch (e) {
        if (retryable(e)) {
          im.offline = true;
          scheduleRetry();
          if (!warned) toast(CONNECTION_LOST, 'error', 10_000);
          warned = true;
        } else {
          im.offline = false;
          im.error = e.message;
          toast(`Not saved: ${im.error}. Your changes are kept in this browser; discard them to go on.`, 'error', 10_000);
        }
      } finally {
        im.saving = null;
        persist(im);
        showSaveState();
        markStrip(im);
      }
    })();
    showSaveState();
    await im.saving;
    if (im.again) { im.again = false; if (dirty(im) && !im.conflict) await save(im); }
  }
  const saveAll = () => Promise.all(images.filter((im) => dirty(im) || im.saving).map((im) => (im.saving || save(im))));

  // Back to the last saved version of every image that could not be saved, when the user says so.
  async function discardUnsaved() {
    const list = images.filter(failed);
    if (!list.length) return;
    const ok = await modal('Discard unsaved changes',
      h('p', null, `The changes to ${plural(list.length, 'image', 'images')} that could not be saved will be lost; those images go back to their last saved version.`),
      [{ text: 'Keep them', value: false }, { text: 'Discard', value: true, class: 'danger' }]);
    if (!ok) return;
    for (const im of list) {
      clearTimeout(im.timer);
      // Undo steps name shapes by id, and the discarded shapes are gone: so is their history.
      im.history.undo.length = 0;
      im.history.redo.length = 0;
      setShapes(im, JSON.parse(im.saved));
      im.offline = false;
      im.error = null;
      persist(im);
      markStrip(im);
    }
    if (list.includes(current)) { editor.select(null); editor.invalidate(); renderObjects(); }
    showSaveState();
  }
  discardButton.addEventListener('click', discardUnsaved);

  // A stale version: show theirs and mine; reload theirs (mine stays in undo) or keep mine.
  async function resolveConflict(im, theirVersion) {
    const theirs = await api(`/api/v1/tasks/${taskId}/images/${im.sha256}/annotations`);
    const mine = clean(im.shapes);
    const body = h('div', { id: 'conflict' },
      h('p', null, `Someone saved this image while you were editing: version ${theirs.version} by ${theirs.saved_by || '?'} at ${fmtTime(theirs.saved_ms)}. Your changes were made on version ${im.version}. Nothing has been overwritten.`),
      h('div', { class: 'conflict-cols' },
        h('div', null, h('h3', null, `Theirs: ${theirs.shapes.length} shapes`), h('pre', null, summary(theirs.shapes))),
        h('div', null, h('h3', null, `Yours: ${mine.length} shapes`), h('pre', null, summary(mine)))),
      h('p', { class: 'muted' }, 'Reload theirs keeps yours in undo (Ctrl+Z brings it back). Keep mine saves yours as a new version; theirs stays in the history.'));
    const choice = await modal('Edit conflict', body, [
      { text: 'Reload theirs', value: 'theirs', class: '' },
      { text: 'Keep mine', value: 'mine', class: 'primary' },
    ]);
    im.conflict = false;
    if (choice === 'mine') {
      im.version = theirs.version ?? theirVersion;
      im.saving = null;
      await save(im, { base: im.version });
    } else {
      // Theirs, with mine one undo step away.
      im.history.undo.push(snapshot(im.shapes));
      im.history.redo.length = 0;
      setShapes(im, theirs.shapes);
      markSaved(im, theirs.version);
      persist(im);
      if (im === current) { editor.select(null); editor.invalidate(); renderObjects(); }
      toast(choice === 'theirs' ? 'Reloaded their version; Ctrl+Z restores yours' : 'Kept their version; Ctrl+Z restores yours');
    }
    showSaveState();
  }

  // --- moving between images
  let seq = 0;
  async function go(n) {
    if (n < 0 || n >= images.length) return;
    const prev = current;
    if (prev && dirty(prev)) save(prev);
    const im = images[n];
    const mine = ++seq;
    position.textContent = `image ${n + 1} of ${images.length}`;
    imageName.textContent = im.name || '';
    imageName.title = im.name || '';
    prefetch(n + 1);
    try {
      const [img] = await Promise.all([loadImage(im), loadShapes(im)]);
      if (mine !== seq) return;
      current = im;
      editor.readOnly = mode() === 'view';
      editor.show(img, im.shapes, im.history, { fit: true, width: im.width, height: im.height });
      // Back on an image whose original was fetched already: draw that again, not its preview.
      im.fullP?.then((full) => { if (current === im) editor.setImage(full); }).catch(() => {});
      canvas.dataset.sha = im.sha256;
      canvas.dataset.width = String(editor.width);
      canvas.dataset.height = String(editor.height);
      canvas.dataset.n = String(n);
      editor.pins = pinsFor(im);
      renderObjects();
      renderComments();
      for (const x of images) markStrip(x);
      strip.children[n]?.scrollIntoView({ block: 'nearest', inline: 'nearest' });
      showSaveState();
      const url = new URL(location.href);
      url.searchParams.set('image', String(n + 1));
      history.replaceState(null, '', url.pathname + url.search);
    } catch (e) {
      toast(e.message, 'error');
    }
  }

  // --- comments (review)
  const pinsFor = (im) => comments.filter((c) => c.sha256 === im.sha256 && c.parent == null)
    .map((c) => ({ x: c.x, y: c.y, n: comments.filter((x) => x.parent == null).indexOf(c) + 1, resolved: !!c.resolved_by }));
  async function loadComments() {
    try { comments = (await api(`/api/v1/tasks/${taskId}/comments`)).items; } catch { comments = []; }
    if (current) { editor.pins = pinsFor(current); editor.invalidate(); renderComments(); }
    for (const im of images) markStrip(im);
  }
  function renderComments() {
    clear(commentList);
    const roots = comments.filter((c) => c.parent == null);
    const here = roots.filter((c) => c.sha256 === current?.sha256);
    for (const c of here) {
      const replies = comments.filter((r) => r.parent === c.id);
      const li = h('li', { class: c.resolved_by ? 'resolved' : '', dataset: { comment: String(c.id) } },
        h('strong', null, `#${roots.indexOf(c) + 1} ${c.by}: `), c.text,
        replies.map((r) => h('div', null, h('em', null, `${r.by}: `), r.text)));
      const reply = h('button', { type: 'button', class: 'vis' }, 'Reply');
      reply.addEventListener('click', async () => {
        const text = await ask('Reply', 'Your reply');
        if (text) { await api(`/api/v1/tasks/${taskId}/comments`, { json: { parent: c.id, text } }); loadComments(); }
      });
      li.append(h('div', null, reply));
      if (!c.resolved_by && atLeast('reviewer')) {
        const res = h('button', { type: 'button', class: 'vis' }, 'Resolve');
        res.addEventListener('click', async () => { await api(`/api/v1/comments/${c.id}/resolve`, { method: 'POST' }); loadComments(); });
        li.lastChild.append(' ', res);
      }
      commentList.append(li);
    }
    const elsewhere = roots.length - here.length;
    if (!here.length) commentList.append(h('li', { class: 'muted', style: { border: 0, background: 'none' } }, 'No comments on this image.'));
    if (elsewhere > 0) {
      // The next image (after this one, wrapping) with a comment of its own.
      const next = [...images.slice(current.n + 1), ...images.slice(0, current.n)]
        .find((im) => roots.some((c) => c.sha256 === im.sha256));
      const jump = next && h('button', { type: 'button', class: 'vis', id: 'next-comment' }, `Go to image ${next.n + 1}`);
      jump?.addEventListener('click', () => go(next.n));
      commentList.append(h('li', { class: 'muted', style: { border: 0, background: 'none' } }, `${elsewhere} on other images. `, jump));
    }
  }
  async function ask(title, label, required = true) {
    const ta = h('textarea', { rows: 3, cols: 40, id: 'ask-text', required });
    const body = h('label', { class: 'field' }, h('span', null, label), ta);
    setTimeout(() => ta.focus(), 0);
    const ok = await modal(title, body, [{ text: 'Cancel', value: false }, { text: 'OK', value: true, class: 'primary' }]);
    return ok ? ta.value.trim() : null;
  }
  async function addComment(x, y) {
    const text = await ask('Comment at this point', 'Comment');
    if (!text) return;
    try {
      await api(`/api/v1/tasks/${taskId}/comments`, { json: { sha256: current.sha256, x: Math.round(x * 10) / 10, y: Math.round(y * 10) / 10, text } });
      await loadComments();
    } catch (e) { toast(e.message, 'error'); }
  }

  // --- task actions
  /** Saves what is pending; whether everything is saved (if not, the user is told why not). */
  async function allSaved() {
    await saveAll();
    const unsaved = images.filter((im) => dirty(im) || im.conflict).length;
    if (unsaved) toast(`${plural(unsaved, 'image is', 'images are')} not saved yet: your work is kept and will be saved when the server is back; try again then (or discard the changes)`, 'error', 10_000);
    return !unsaved;
  }
  async function act(action, body) {
    if (!(await allSaved())) return false;
    try {
      task = await api(`/api/v1/tasks/${taskId}/${action}`, body ? { json: body } : { method: 'POST' });
      return true;
    } catch (e) { toast(e.message, 'error'); return false; }
  }
  function renderActions() {
    clear(barActions);
    stateBox.replaceChildren(stateBadge(task.state));
    const m = mode();
    if (m === 'annotate') {
      const b = h('button', { type: 'button', class: 'primary', id: 'submit' }, 'Submit task');
      b.addEventListener('click', async () => {
        if (!(await allSaved())) return;
        // Images left without a shape are usually forgotten ones: ask, and offer the first.
        await Promise.all(images.map((im) => loadShapes(im).catch(() => {})));
        const empty = images.filter((im) => im.shapes && !im.shapes.length);
        if (empty.length) {
          const choice = await modal('Images without shapes', h('p', { id: 'unannotated' },
            `${plural(empty.length, 'image has', 'images have')} no shapes (${empty.slice(0, 10).map((im) => im.n + 1).join(', ')}${empty.length > 10 ? ', …' : ''}). Submit anyway?`),
          [{ text: `Go to image ${empty[0].n + 1}`, value: 'go' }, { text: 'Submit anyway', value: 'submit', class: 'primary' }]);
          if (choice === 'go') { go(empty[0].n); return; }
          if (choice !== 'submit') return;
        }
        if (await act('submit')) { toast(`Task ${task.id} submitted`, 'ok'); ctx.navigate('/my-tasks'); }
      });
      barActions.append(b);
    } else if (m === 'review') {
      const acc = h('button', { type: 'button', class: 'primary', id: 'accept' }, 'Accept');
      const rej = h('button', { type: 'button', class: 'danger', id: 'reject' }, 'Reject…');
      acc.addEventListener('click', async () => { if (await act('accept')) { toast(`Task ${task.id} accepted`, 'ok'); ctx.navigate(reviewHome()); } });
      rej.addEventListener('click', async () => {
        const reason = await ask('Reject task', 'Reason (the annotator sees it with the comments)');
        if (reason && await act('reject', { reason })) { toast(`Task ${task.id} sent back`, 'ok'); ctx.navigate(reviewHome()); }
      });
      barActions.append(acc, rej);
    } else if (task.assignee === me && (task.state === 'new' || task.state === 'rejected')) {
      const b = h('button', { type: 'button', class: 'primary', id: 'start' }, task.state === 'new' ? 'Start' : 'Start rework');
      b.addEventListener('click', async () => {
        if (await act('start')) { editor.readOnly = false; renderActions(); renderAttributes(editor.selectedShape()); renderKeypoints(); renderObjects(); }
      });
      barActions.append(b);
    }
    const reason = [...(task.history || [])].reverse().find((e) => e.reason)?.reason;
    if (reason && (task.state === 'rejected' || m === 'annotate')) barActions.prepend(h('span', { class: 'badge st-rejected', title: 'Reviewer' }, `Rejected: ${reason}`));
  }

  // --- copy and paste of shapes, within an image or onto others (the next frames)
  let clipboard = null;
  function copyShapes() {
    if (!current?.shapes) return;
    const s = editor.selectedShape();
    clipboard = clean(s ? [s] : current.shapes.filter((x) => x.kind !== 'tag'));
    toast(`${plural(clipboard.length, 'shape', 'shapes')} copied`);
  }
  function pasteShapes() {
    if (!clipboard?.length || !current || editor.readOnly) return;
    const W = Number(canvas.dataset.width);
    const H = Number(canvas.dataset.height);
    editor.checkpoint([]);
    const pasted = withIds(clipboard.map((s) => ({ ...s, points: s.points.map(([x, y]) => [Math.min(W, Math.max(0, x)), Math.min(H, Math.max(0, y))]) })));
    current.shapes.push(...pasted);
    current.rev++;
    editor.select(pasted[pasted.length - 1]._id);
    editor.changed();
    toast(`${plural(pasted.length, 'shape', 'shapes')} pasted`);
  }

  // --- keyboard
  function typing(e) {
    const t = e.target;
    return t instanceof HTMLElement && (t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName)) || document.querySelector('dialog[open]');
  }
  function onKey(e) {
    if (typing(e)) return;
    const k = e.key;
    const ctrl = e.ctrlKey || e.metaKey;
    if (ctrl && k.toLowerCase() === 'z') { e.preventDefault(); if (e.shiftKey) editor.redo(); else editor.undo(); return; }
    if (ctrl && k.toLowerCase() === 'y') { e.preventDefault(); editor.redo(); return; }
    if (ctrl && k.toLowerCase() === 's') { e.preventDefault(); if (current) save(current); return; }
    if (ctrl && k.toLowerCase() === 'c') { e.preventDefault(); copyShapes(); return; }
    if (ctrl && k.toLowerCase() === 'v') { e.preventDefault(); pasteShapes(); return; }
    if (ctrl || e.altKey) return;
    if (k === ' ') { editor.space = true; canvas.style.cursor = 'grab'; e.preventDefault(); return; }
    if (k === 'Enter') { editor.finishDraft(); return; }
    if (k === 'Escape') { if (editor.draft) editor.cancelDraft(); else editor.select(null); return; }
    if (k === 'Backspace' && editor.popDraftPoint()) { e.preventDefault(); return; }
    if (k === 'Delete' || k === 'Backspace') { editor.deleteSelected(); e.preventDefault(); return; }
    if (k === 'ArrowRight' || k === 'd' || k === 'D') { go(current.n + 1); return; }
    if (k === 'ArrowLeft' || k === 'a' || k === 'A') { go(current.n - 1); return; }
    if (k === 'f' || k === 'F') { editor.fit(); return; }
    if (k === '+' || k === '=') { editor.zoom(1.25); return; }
    if (k === '-') { editor.zoom(0.8); return; }
    if (k === '?') { showHelp(); return; }
    if (k === 'o' || k === 'O') { editor.toggleOccluded(); return; }
    if (k === 'n' || k === 'N') { editor.skipKeypoint(); return; }
    if (k === 'q' || k === 'Q') { editor.toggleShapeOccluded(); return; }
    if (k === 'h' || k === 'H') { const s = editor.selectedShape(); if (s) { s._hidden = !s._hidden; editor.reshow(s); renderObjects(); } return; }
    if (k === '[' || k === ']') {
      const s = editor.selectedShape();
      if (s?.kind === 'rotated_rectangle') editor.update(s, (x) => { x.angle = (((x.angle || 0) + (k === ']' ? 5 : -5)) % 360 + 360) % 360; });
      return;
    }
    if (/^[1-9]$/.test(k)) { chooseLabel(Number(k) - 1); return; }
    const tool = KEY_TOOL[k.toLowerCase()];
    if (tool) setTool(tool);
  }
  function onKeyUp(e) { if (e.key === ' ') { editor.space = false; canvas.style.cursor = editor.tool === 'select' ? 'default' : 'crosshair'; } }
  document.addEventListener('keydown', onKey);
  document.addEventListener('keyup', onKeyUp);

  function showHelp() {
    modal('Keyboard shortcuts', h('table', { class: 'help-table' }, h('tbody', null, SHORTCUTS.map(([k, t]) => h('tr', null, h('td', null, k), h('td', null, t))))),
      [{ text: 'Close', value: true, class: 'primary' }]);
  }

  // --- leaving
  ctx.setLeaveGuard((unloading) => {
    const busy = images.some((im) => dirty(im) || im.saving || im.conflict);
    if (!busy) return true;
    if (unloading) { saveAll(); return false; }
    saveAll();
    const notSaved = images.filter(failed).length;
    return confirm(notSaved
      ? `${plural(notSaved, 'image is', 'images are')} not saved yet. They are kept in this browser and sent again when you open this task. Leave anyway?`
      : 'Some changes are still being saved. Leave anyway?');
  });

  renderLabels();
  renderActions();
  setTool('select');
  renderStrip();
  const start = Math.max(0, Math.min(images.length - 1, Number(ctx.query.get('image') || 1) - 1));
  await go(start);
  loadComments();
  // Images further on with work kept from before: load them, which sends it again.
  for (const sha of queued.keys()) {
    const im = images.find((x) => x.sha256 === sha);
    if (im) loadShapes(im).catch(() => {});
  }

  return () => {
    document.removeEventListener('keydown', onKey);
    document.removeEventListener('keyup', onKeyUp);
    window.removeEventListener('online', retryNow);
    clearTimeout(retryTimer);
    clearInterval(zoomLoop);
    editor.destroy();
    saveAll();
    main(el, false);
  };
}

/** One line per shape: label, kind and rounded points. */
function summary(shapes) {
  return shapes.map((x) => `${x.label} · ${x.kind.replace('_', ' ')} ${x.points.map(([a, b]) => `(${Math.round(a)}, ${Math.round(b)})`).join(' ')}`).join('\n') || '(none)';
}

function main(_el, full) { document.getElementById('view').classList.toggle('full', full); }
