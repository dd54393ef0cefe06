// The annotation canvas: one image, its shapes, the view (zoom and pan) and the drawing tools.
// Shapes are in image pixels ({label, kind, points: [[x, y]...], angle?, attributes?}); the image
// is drawn through the view transform and the shapes in screen space, so lines stay crisp at any
// zoom. The canvas keeps its backing store at devicePixelRatio.
//
// A keypoint set (kind `points`) may carry `visibility`, one COCO flag per point: 0 not labelled
// (its point a placeholder [0, 0], not drawn), 1 occluded (drawn hollow), 2 visible (the default).
// Any shape but a tag may be `occluded` (partly hidden behind another object, CVAT's flag): its
// outline is drawn dashed.
//
// Undo keeps, per step, copies of only the shapes the step changed (and the order of the shapes,
// their ids, when the step adds, removes or reorders), not a snapshot of them all: on an image of
// thousands of shapes a snapshot is megabytes to make, keep and restore on every edit. Undoing
// puts the copies back (and the order as it was); the shapes the step did not touch are the
// same objects throughout.
//
// Thousands of shapes: the shapes other than the selected one are drawn once into a cached layer
// (a second canvas at the same devicePixelRatio); a frame composites the image, that layer, then
// the selected shape, its handles, the draft and the comment pins. The selected shape is thus
// drawn on top of the others while it is selected (as CVAT does), and back in its place in the
// z-order once deselected; a click still hits the topmost shape in the z-order. Selecting, or an
// undo touching a few shapes, redraws only the layer's rectangles around them; a pan or pinch in
// progress moves and scales the cached bitmap, and the layer is drawn again once the gesture ends
// (a wheel zoom, WHEEL_END after its last event). Each shape's bounding box is cached, so a click
// tests only the shapes whose box is under it.

const HANDLE = 5; // half-size of a vertex handle, CSS px
const LABELS_MAX = 300; // above this many shapes only the selected one has its label drawn
const UNDO_WEIGHT = 16e6; // undo kept per image, in ids and copied points (about 128 MB at most)
const CLOSE = 9; // how near the first point closes a polygon, CSS px
const RING_GAP = 8; // skeleton edges stop this far from an occluded keypoint (outside its ring), CSS px
const PAD = 12; // how far a shape's drawing reaches outside its points' box (strokes, keypoint rings), CSS px
const PARTIAL_MAX = 64; // a change to more shapes than this draws the whole layer again
const WHEEL_END = 150; // a wheel zoom ends this long after its last event, ms
const round = (v) => Math.round(v * 100) / 100;
let nextId = 1;

export const NOT_LABELLED = 0;
export const OCCLUDED = 1;
export const VISIBLE = 2;
export const VISIBILITY_NAMES = ['not labelled', 'occluded', 'visible'];

/** The visibility of keypoint `i` of a set (visible unless the set says otherwise). */
export const visibilityOf = (s, i) => s.visibility?.[i] ?? VISIBLE;
const labelled = (s, i) => visibilityOf(s, i) !== NOT_LABELLED;
/** Whether point `i` of a shape has a position (every point but a keypoint not labelled). */
const placed = (s, i) => s.kind !== 'points' || labelled(s, i);

/** Sets the visibility of keypoint `i`; a keypoint not labelled goes to the placeholder [0, 0]. */
function setVisibility(s, i, v) {
  s.visibility = s.points.map((_, j) => (j === i ? v : visibilityOf(s, j)));
  if (v === NOT_LABELLED) s.points[i] = [0, 0];
  if (s.visibility.every((x) => x === VISIBLE)) delete s.visibility;
}

/** A copy of a shape that shares nothing mutable with it (local fields such as `_id` included). */
function copy(s) {
  const c = { ...s, points: s.points.map((p) => [...p]) };
  if (s.visibility) c.visibility = [...s.visibility];
  if (s.attributes) c.attributes = { ...s.attributes };
  return c;
}

/**
 * An undo step: copies of `changed` (all of them when null), the shapes an edit is about to
 * change or remove, and the order of `shapes` (ids) unless the edit changes the shapes in place
 * (`inPlace`: none added, removed or moved in the z-order; `order` is then null); `weight`
 * counts what it keeps.
 */
export function snapshot(shapes, changed = null, inPlace = false) {
  const kept = new Map((changed ?? shapes).map((s) => [s._id, copy(s)]));
  let weight = inPlace ? 0 : shapes.length;
  for (const s of kept.values()) weight += s.points.length + 1;
  return { order: inPlace ? null : shapes.map((s) => s._id), kept, weight };
}

export function withIds(shapes) {
  return shapes.map((s) => ({
    ...s, points: s.points.map((p) => [...p]), ...(s.visibility && { visibility: [...s.visibility] }), _id: nextId++,
  }));
}

/** Hidden and locked are how a shape is shown and handled now, not edits: undo keeps them. */
function keepView(back, now) {
  for (const k of ['_hidden', '_locked']) {
    if (now[k]) back[k] = true; else delete back[k];
  }
}

/** A shape as the API takes it (no local fields). */
function cleanOne(s) {
  const out = { label: s.label, kind: s.kind, points: s.points.map(([x, y]) => [round(x), round(y)]) };
  if (s.kind === 'rotated_rectangle') out.angle = s.angle || 0;
  if (s.kind === 'points' && s.visibility?.some((v) => v !== VISIBLE)) out.visibility = [...s.visibility];
  if (s.attributes && Object.keys(s.attributes).length) out.attributes = s.attributes;
  if (s.occluded && s.kind !== 'tag') out.occluded = true;
  return out;
}

/** The shapes as the API takes them (no local fields). */
export const clean = (shapes) => shapes.map(cleanOne);

/**
 * Each shape's JSON text as the API takes it, made once per change of the shape rather than
 * for all of them at every save (thousands of shapes take tens of ms). The editor forgets a
 * shape's text before it changes the shape (`checkpoint`) and after (`changed`); every other
 * change makes new shape objects (undo, redo, loading, pasting).
 */
const texts = new WeakMap();
export function shapeText(s) {
  let t = texts.get(s);
  if (t === undefined) {
    t = JSON.stringify(cleanOne(s));
    texts.set(s, t);
  }
  return t;
}

/** The four corners of a (rotated) rectangle, in image pixels. */
export function corners(s) {
  const [[x1, y1], [x2, y2]] = s.points;
  const pts = [[x1, y1], [x2, y1], [x2, y2], [x1, y2]];
  if (s.kind !== 'rotated_rectangle' || !s.angle) return pts;
  const cx = (x1 + x2) / 2;
  const cy = (y1 + y2) / 2;
  const a = (s.angle * Math.PI) / 180;
  const [c, n] = [Math.cos(a), Math.sin(a)];
  return pts.map(([x, y]) => [cx + (x - cx) * c - (y - cy) * n, cy + (x - cx) * n + (y - cy) * c]);
}

function inside(poly, x, y) {
  let hit = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i];
    const [xj, yj] = poly[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) hit = !hit;
  }
  return hit;
}

function segDist(px, py, [ax, ay], [bx, by]) {
  const dx = bx - ax;
  const dy = by - ay;
  const t = dx || dy ? Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy))) : 0;
  return Math.hypot(px - (ax + t * dx), py - (ay + t * dy));
}

/** Screen point `d` px from `p` towards `q` (an edge stops there, outside an occluded ring). */
function towards([px, py], [qx, qy], d) {
  const len = Math.hypot(qx - px, qy - py);
  const t = len > 2 * d ? d / len : 0.5;
  return [px + (qx - px) * t, py + (qy - py) * t];
}

function alpha(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
}

export class Editor {
  /**
   * `labels`: the schema; `hooks`: {change(), select(shape|null), draft(text), comment(x, y),
   * toast(msg), label(): the current label name}.
   */
  constructor(canvas, labels, hooks) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.labels = labels;
    this.hooks = hooks;
    this.image = null;
    this.shapes = [];
    this.pins = [];
    /** How the image and shapes are shown (not saved): image brightness and contrast in %, fill opacity. */
    this.look = { brightness: 100, contrast: 100, opacity: 0.15 };
    this.selected = null;
    /** The chosen keypoint (index) of the selected set, or null. */
    this.keypoint = null;
    /** While placing keypoints: the next one is occluded. */
    this.occludeNext = false;
    /** The visibility a not-labelled keypoint chosen in the panel gets when it is placed. */
    this.placeAs = VISIBLE;
    this.tool = 'select';
    this.readOnly = false;
    this.scale = 1;
    this.tx = 0;
    this.ty = 0;
    this.draft = null;
    this.drag = null;
    this.space = false;
    this.pointer = null;
    /** Fingers on the canvas (pointerId → screen point); two of them pinch and pan. */
    this.touches = new Map();
    this.pinch = null;
    this.undoStack = [];
    this.redoStack = [];
    this.frame = 0;
    /** The cached layer of the shapes other than the selected one, and what it was drawn for. */
    this.layer = document.createElement('canvas');
    this.lctx = this.layer.getContext('2d');
    this.layerView = null;
    this.layerStale = true;
    /** Screen rectangles [x1, y1, x2, y2] of the layer to draw again (a shape left or joined it). */
    this.dirty = [];
    this.boxes = new WeakMap();
    this.wheelEnd = 0;
    this.resize = new ResizeObserver(() => { this.fitCanvas(); this.repaint(); });
    this.resize.observe(canvas);
    canvas.addEventListener('pointerdown', (e) => this.down(e));
    canvas.addEventListener('pointermove', (e) => this.move(e));
    canvas.addEventListener('pointerup', (e) => this.up(e));
    canvas.addEventListener('pointercancel', (e) => this.up(e));
    canvas.addEventListener('dblclick', (e) => {
      e.preventDefault();
      if (this.draft) this.finishDraft();
      else this.editVertexAt(this.local(e));
    });
    canvas.addEventListener('wheel', (e) => this.wheel(e), { passive: false });
    canvas.addEventListener('contextmenu', (e) => e.preventDefault());
    canvas.addEventListener('auxclick', (e) => e.preventDefault());
  }

  destroy() { this.resize.disconnect(); cancelAnimationFrame(this.frame); clearTimeout(this.wheelEnd); }

  label(name) { return this.labels.find((l) => l.name === name); }

  /**
   * Shows an image with its shapes; `history` keeps undo/redo per image. `width` and `height`
   * are the original's displayed size, the frame of every coordinate: `image` may be a smaller
   * preview, drawn scaled up to that size until `setImage` swaps in the original.
   */
  show(image, shapes, history, { fit = true, width, height } = {}) {
    this.image = image;
    this.width = width || image.naturalWidth;
    this.height = height || image.naturalHeight;
    this.shapes = shapes;
    this.undoStack = history.undo;
    this.redoStack = history.redo;
    this.selected = null;
    this.draft = null;
    this.hooks.draft?.('');
    if (fit) this.fit();
    this.invalidate();
    this.hooks.select?.(null);
  }

  /** Swaps the drawn picture (the original for its preview) without moving the view. */
  setImage(image) {
    this.image = image;
    this.repaint();
  }

  fitCanvas() {
    const r = this.canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(r.width * dpr));
    const hgt = Math.max(1, Math.round(r.height * dpr));
    if (this.canvas.width !== w || this.canvas.height !== hgt) {
      const first = this.canvas.width <= 300 && this.canvas.height <= 150;
      this.canvas.width = w;
      this.canvas.height = hgt;
      if (first) this.fit();
    }
  }

  fit() {
    if (!this.image) return;
    const r = this.canvas.getBoundingClientRect();
    const pad = 16;
    const s = Math.min((r.width - 2 * pad) / this.width, (r.height - 2 * pad) / this.height);
    this.scale = s > 0 ? s : 1;
    this.tx = (r.width - this.width * this.scale) / 2;
    this.ty = (r.height - this.height * this.scale) / 2;
    this.repaint();
  }

  zoomAt(factor, sx, sy) {
    const s = Math.min(64, Math.max(0.02, this.scale * factor));
    this.tx = sx - ((sx - this.tx) * s) / this.scale;
    this.ty = sy - ((sy - this.ty) * s) / this.scale;
    this.scale = s;
    this.repaint();
  }

  zoom(factor) {
    const r = this.canvas.getBoundingClientRect();
    this.zoomAt(factor, r.width / 2, r.height / 2);
  }

  /** Draws again, the cached layer included (after anything the layer may show changed). */
  invalidate() {
    this.layerStale = true;
    this.repaint();
  }

  /** Draws again over the cached layer (the selected shape, the draft, the view moved). */
  repaint() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.draw(); });
  }

  /** Draws the layer again around shape `s` (in its current place). */
  touch(s) {
    if (!s || this.layerStale) return;
    if (!this.sameView() || this.shapes.length <= LABELS_MAX || this.dirty.length >= PARTIAL_MAX) { this.layerStale = true; return; }
    const [x1, y1, x2, y2] = this.box(s);
    const [a, b] = this.toScreen([x1, y1]);
    const [c, d] = this.toScreen([x2, y2]);
    this.dirty.push([a - PAD, b - PAD, c + PAD, d + PAD]);
  }

  /** After shape `s` was hidden, shown, locked or unlocked: draws the layer again around it. */
  reshow(s) {
    if (s._id !== this.selected) this.touch(s);
    this.repaint();
  }

  /** The box [x1, y1, x2, y2] of a shape's placed points, in image pixels (cached until it is edited). */
  box(s) {
    let b = this.boxes.get(s);
    if (b && s._id !== this.selected) return b;
    b = [Infinity, Infinity, -Infinity, -Infinity];
    const pts = s.kind === 'rectangle' || s.kind === 'rotated_rectangle' ? corners(s) : s.points;
    pts.forEach(([x, y], i) => {
      if (!placed(s, i)) return;
      if (x < b[0]) b[0] = x;
      if (y < b[1]) b[1] = y;
      if (x > b[2]) b[2] = x;
      if (y > b[3]) b[3] = y;
    });
    this.boxes.set(s, b);
    return b;
  }

  /** Whether the layer was drawn for the current view and canvas size. */
  sameView() {
    const v = this.layerView;
    return !!v && v.scale === this.scale && v.tx === this.tx && v.ty === this.ty
      && v.w === this.canvas.width && v.h === this.canvas.height;
  }

  /** Whether a gesture that moves the view (pan, pinch, wheel) is under way. */
  gesture() { return this.drag?.type === 'pan' || !!this.pinch || !!this.wheelEnd; }

  // --- coordinates
  local(e) {
    const r = this.canvas.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  }
  toImage([sx, sy], clamp = true) {
    let x = (sx - this.tx) / this.scale;
    let y = (sy - this.ty) / this.scale;
    if (clamp && this.image) {
      x = Math.max(0, Math.min(this.width, x));
      y = Math.max(0, Math.min(this.height, y));
    }
    return [x, y];
  }
  toScreen([x, y]) { return [x * this.scale + this.tx, y * this.scale + this.ty]; }

  // --- history
  /**
   * Before an edit: an undo step that can put back `changed` (the shapes the edit will change or
   * remove; all of them when null) and the order of the shapes. An edit that only adds or
   * reorders shapes passes []; one that only changes `changed` where they are, `inPlace`.
   */
  checkpoint(changed = null, inPlace = false) {
    for (const s of changed ?? this.shapes) texts.delete(s);
    this.undoStack.push(snapshot(this.shapes, changed, inPlace));
    let weight = this.undoStack.reduce((n, x) => n + x.weight, 0);
    while (this.undoStack.length > 200 || (this.undoStack.length > 1 && weight > UNDO_WEIGHT)) weight -= this.undoStack.shift().weight;
    this.redoStack.length = 0;
  }
  /**
   * The step that takes the shapes back from after `step` to now: the current order and copies
   * of the shapes `step` will replace or remove (those it kept, and those added since it).
   */
  inverse(step) {
    if (!step.order) return snapshot(this.shapes, this.shapes.filter((s) => step.kept.has(s._id)), true);
    const before = new Set(step.order);
    return snapshot(this.shapes, this.shapes.filter((s) => step.kept.has(s._id) || !before.has(s._id)));
  }
  /** Puts the shapes back as `step` has them (the shapes it did not keep are unchanged since). */
  apply(step) {
    const sel = this.selected;
    if (step.order) {
      const before = new Map(this.shapes.map((s) => [s._id, s]));
      const next = step.order.map((id) => {
        const [back, now] = [step.kept.get(id), before.get(id)];
        if (back && now) keepView(back, now);
        return back || now;
      }).filter(Boolean);
      // The same array: the workspace holds it. Pushed one by one (no argument-count limit).
      this.shapes.length = 0;
      for (const s of next) this.shapes.push(s);
      this.relayer(before);
    } else {
      // In place: each kept shape goes back where its current self is.
      this.shapes.forEach((s, i) => {
        const back = step.kept.get(s._id);
        if (!back) return;
        keepView(back, s);
        this.shapes[i] = back;
        if (s._id !== sel) { this.touch(s); this.touch(back); }
      });
    }
    this.selected = this.shapes.some((s) => s._id === sel) ? sel : null;
    if (this.selected !== sel) this.keypoint = null;
    this.hooks.select?.(this.selectedShape());
    this.repaint();
    this.hooks.change?.();
  }
  /**
   * After the shapes were replaced (undo, redo): draws the layer again around the shapes that
   * differ from `before` (id → shape), or all of it when the order of the others changed.
   */
  relayer(before) {
    const same = (a, b) => a === b || (a.label === b.label && a.kind === b.kind && a.angle === b.angle && !a._hidden === !b._hidden
      && !a.occluded === !b.occluded && String(a.visibility) === String(b.visibility) && a.points.length === b.points.length
      && a.points.every(([x, y], i) => x === b.points[i][0] && y === b.points[i][1]));
    const now = new Set(this.shapes.map((s) => s._id));
    const order = (ids) => ids.filter((id) => id !== this.selected && now.has(id) && before.has(id)).join();
    if (order([...before.keys()]) !== order([...now])) { this.layerStale = true; return; }
    for (const s of this.shapes) {
      const old = before.get(s._id);
      if (old === s) continue;
      if (old && same(old, s)) this.boxes.set(s, this.boxes.get(old) || this.box(s));
      else if (s._id !== this.selected) { if (old) this.touch(old); this.touch(s); }
    }
    for (const [id, old] of before) if (!now.has(id) && id !== this.selected) this.touch(old);
  }
  undo() {
    if (this.draft) { this.cancelDraft(); return; }
    const step = this.undoStack.pop();
    if (!step) return;
    this.redoStack.push(this.inverse(step));
    this.apply(step);
  }
  redo() {
    const step = this.redoStack.pop();
    if (!step) return;
    this.undoStack.push(this.inverse(step));
    this.apply(step);
  }
  /**
   * After an edit: `only`, the one shape it changed when it was the selected one (drawn over the
   * layer), or nothing when the layer may show the change.
   */
  changed(only) {
    for (const s of only ? [only] : this.shapes) texts.delete(s);
    if (only && only._id === this.selected) this.repaint(); else this.invalidate();
    this.hooks.change?.();
  }

  // --- selection and editing
  selectedShape() { return this.shapes.find((s) => s._id === this.selected) || null; }
  select(id, keypoint = null) {
    this.activate(id);
    this.keypoint = keypoint;
    this.placeAs = VISIBLE;
    this.repaint();
    this.hooks.select?.(this.selectedShape());
  }
  /** Makes `id` the selected shape: the layer leaves it out and shows the one selected before. */
  activate(id) {
    if (id === this.selected) return;
    const leaving = this.selectedShape();
    if (leaving && !leaving._hidden) this.touch(leaving);
    this.selected = id;
    const coming = this.selectedShape();
    if (coming && !coming._hidden) this.touch(coming);
    this.repaint();
  }
  deleteSelected() {
    const s = this.selectedShape();
    if (!s || this.readOnly) return;
    if (s._locked) { this.hooks.toast?.('This shape is locked: unlock it first'); return; }
    this.checkpoint([s]);
    this.shapes.splice(this.shapes.indexOf(s), 1);
    this.changed(s);
    this.select(null);
  }
  update(shape, fn) {
    if (this.readOnly) return;
    this.checkpoint([shape], true);
    fn(shape);
    this.boxes.delete(shape);
    this.changed(shape);
    this.hooks.select?.(this.selectedShape());
  }
  add(shape) {
    this.checkpoint([]);
    const s = { ...shape, _id: nextId++ };
    const label = this.label(s.label);
    const attrs = {};
    for (const a of label?.attributes || []) {
      if (a.default != null) attrs[a.name] = a.default;
      else if (a.required) attrs[a.name] = a.type === 'select' ? a.options[0] : a.type === 'checkbox' ? false : a.type === 'number' ? (a.min ?? 0) : '';
    }
    if (Object.keys(attrs).length) s.attributes = attrs;
    this.shapes.push(s);
    this.activate(s._id);
    this.keypoint = null;
    this.changed(s);
    this.hooks.select?.(s);
    return s;
  }

  setTool(tool) {
    this.cancelDraft();
    this.tool = tool;
    this.canvas.dataset.tool = tool;
    this.canvas.style.cursor = tool === 'select' ? 'default' : 'crosshair';
  }

  /** The label to draw `kind` with: the current one if it allows it, else the first that does. */
  labelFor(kind) {
    const current = this.label(this.hooks.label?.());
    if (current?.kinds.includes(kind)) return current;
    return this.labels.find((l) => l.kinds.includes(kind)) || null;
  }

  // --- keypoint visibility
  /** Chooses keypoint `i` of the selected set (a not-labelled one is placed by the next click). */
  chooseKeypoint(i) {
    this.keypoint = i;
    this.placeAs = VISIBLE;
    this.repaint();
    this.hooks.select?.(this.selectedShape());
  }
  /** The editable selected set with a keypoint chosen, or null (after telling why). */
  keypointTarget() {
    const s = this.selectedShape();
    if (s?.kind !== 'points' || this.keypoint == null) { this.hooks.toast?.('Select a keypoint first: click it, or choose it in the panel'); return null; }
    if (this.readOnly) return null;
    if (s._locked) { this.hooks.toast?.('This shape is locked: unlock it first'); return null; }
    return s;
  }
  /**
   * Sets keypoint `i` of the selected set to visibility `v`. A not-labelled keypoint needs a
   * position first: it is chosen, and the next click places it with `v`. One keypoint at least
   * stays labelled.
   */
  setKeypointVisibility(i, v) {
    this.keypoint = i;
    const s = this.keypointTarget();
    if (!s || visibilityOf(s, i) === v) return;
    if (v === NOT_LABELLED && !s.points.some((_, j) => j !== i && labelled(s, j))) {
      this.hooks.toast?.('At least one keypoint stays labelled: delete the set instead');
      this.hooks.select?.(s);
      return;
    }
    if (!labelled(s, i)) {
      this.placeAs = v;
      this.hooks.select?.(s);
      return;
    }
    if (v === NOT_LABELLED) this.keypoint = null;
    this.update(s, (x) => setVisibility(x, i, v));
  }
  /** O: the next keypoint placed is occluded, or the chosen one toggles occluded ⇄ visible. */
  toggleOccluded() {
    if (this.tool === 'points' && !this.readOnly) {
      if (!this.startDraft()) return;
      this.occludeNext = !this.occludeNext;
      this.draftHint();
      return;
    }
    const s = this.keypointTarget();
    if (s) this.setKeypointVisibility(this.keypoint, visibilityOf(s, this.keypoint) === OCCLUDED ? VISIBLE : OCCLUDED);
  }
  /** N: the next keypoint is not in the image (skipped), or the chosen one becomes not labelled. */
  skipKeypoint() {
    if (this.tool === 'points' && !this.readOnly) {
      const d = this.startDraft();
      if (!d) return;
      if (!this.label(d.label)?.keypoints?.length) { this.hooks.toast?.('Only named keypoints can be skipped'); return; }
      this.addDraftKeypoint([0, 0], NOT_LABELLED);
      return;
    }
    if (this.keypointTarget()) this.setKeypointVisibility(this.keypoint, NOT_LABELLED);
  }
  /** A click with a not-labelled keypoint of the selected set chosen places it there; whether it did. */
  placeKeypoint(ip) {
    const s = this.selectedShape();
    const i = this.keypoint;
    if (s?.kind !== 'points' || i == null || labelled(s, i) || s._locked) return false;
    const v = this.placeAs;
    this.placeAs = VISIBLE;
    this.update(s, (x) => { x.points[i] = ip; setVisibility(x, i, v); });
    return true;
  }

  /** Q: the selected shape is occluded (partly hidden behind another object), or no longer. */
  toggleShapeOccluded() {
    const s = this.selectedShape();
    if (!s || this.readOnly || s.kind === 'tag') return;
    if (s._locked) { this.hooks.toast?.('This shape is locked: unlock it first'); return; }
    this.update(s, (x) => { if (x.occluded) delete x.occluded; else x.occluded = true; });
  }

  /** Moves the selected shape to the front (drawn last, hit first) or the back. */
  restack(front) {
    const s = this.selectedShape();
    if (!s || this.readOnly) return;
    this.checkpoint([]);
    this.shapes.splice(this.shapes.indexOf(s), 1);
    if (front) this.shapes.push(s); else this.shapes.unshift(s);
    this.changed(s);
  }

  /**
   * A double click with the select tool on the selected polygon or polyline: on a vertex removes
   * it (a polygon keeps 3, a polyline 2), on an edge adds one there. Whether it did either.
   */
  editVertexAt(sp) {
    const s = this.selectedShape();
    if (!s || this.readOnly || s._locked || (s.kind !== 'polygon' && s.kind !== 'polyline')) return false;
    const handle = this.hitHandle(sp);
    if (handle) {
      if (s.points.length <= (s.kind === 'polygon' ? 3 : 2)) { this.hooks.toast?.(`a ${s.kind} needs at least ${s.kind === 'polygon' ? 3 : 2} points`); return true; }
      this.update(s, (x) => { x.points.splice(handle.index, 1); });
      return true;
    }
    const pts = s.points.map((p) => this.toScreen(p));
    const edges = s.kind === 'polygon' ? pts.length : pts.length - 1;
    for (let j = 0; j < edges; j++) {
      if (segDist(sp[0], sp[1], pts[j], pts[(j + 1) % pts.length]) < 6) {
        this.update(s, (x) => { x.points.splice(j + 1, 0, this.toImage(sp)); });
        return true;
      }
    }
    return false;
  }

  // --- hit testing (screen space)
  vertexHandles(s) {
    if (s.kind === 'rectangle' || s.kind === 'rotated_rectangle') return corners(s);
    return s.points;
  }
  hitHandle(sp) {
    const s = this.selectedShape();
    if (!s || s._hidden || s._locked) return null;
    const hs = this.vertexHandles(s);
    for (let i = hs.length - 1; i >= 0; i--) {
      if (!placed(s, i)) continue;
      const [x, y] = this.toScreen(hs[i]);
      if (Math.abs(x - sp[0]) <= HANDLE + 2 && Math.abs(y - sp[1]) <= HANDLE + 2) return { shape: s, index: i };
    }
    return null;
  }
  hitShape(sp) {
    const [ix, iy] = this.toImage(sp, false);
    const near = 8 / this.scale;
    for (let i = this.shapes.length - 1; i >= 0; i--) {
      const s = this.shapes[i];
      if (s._hidden || s.kind === 'tag') continue;
      const [x1, y1, x2, y2] = this.box(s);
      if (ix < x1 - near || ix > x2 + near || iy < y1 - near || iy > y2 + near) continue;
      const pts = (s.kind === 'rectangle' || s.kind === 'rotated_rectangle' ? corners(s) : s.points).map((p) => this.toScreen(p));
      if ((s.kind === 'rectangle' || s.kind === 'rotated_rectangle' || s.kind === 'polygon') && inside(pts, sp[0], sp[1])) return s;
      if (s.kind === 'polyline' || s.kind === 'polygon') {
        for (let j = 1; j < pts.length + (s.kind === 'polygon' ? 1 : 0); j++) {
          if (segDist(sp[0], sp[1], pts[j - 1], pts[j % pts.length]) < 6) return s;
        }
      }
      if (s.kind === 'points' && this.keypointAt(s, sp) != null) return s;
    }
    return null;
  }
  /** The labelled keypoint of set `s` nearest to screen point `sp` (within 8 px), or null. */
  keypointAt(s, sp) {
    let best = null;
    let bestDist = 8;
    s.points.forEach((p, i) => {
      const [x, y] = this.toScreen(p);
      const dist = Math.hypot(x - sp[0], y - sp[1]);
      if (labelled(s, i) && dist < bestDist) { best = i; bestDist = dist; }
    });
    return best;
  }

  // --- two fingers: pinch zooms around their middle, moving them together pans
  pinchState() {
    const [[ax, ay], [bx, by]] = [...this.touches.values()];
    return { mid: [(ax + bx) / 2, (ay + by) / 2], dist: Math.max(1, Math.hypot(bx - ax, by - ay)) };
  }
  startPinch() {
    // The second finger ends whatever the first one began (a box being drawn, a drag); a shape
    // the drag moved stays where it is, an edit like any other.
    const d = this.drag;
    this.drag = null;
    if (d?.moved) this.changed(d.shape);
    if (this.draft && (this.draft.kind === 'rectangle' || this.draft.kind === 'rotated_rectangle')) this.draft = null;
    this.pinch = { ...this.pinchState(), scale: this.scale, tx: this.tx, ty: this.ty };
    this.repaint();
  }
  movePinch() {
    const p = this.pinch;
    const now = this.pinchState();
    const s = Math.min(64, Math.max(0.02, p.scale * (now.dist / p.dist)));
    // The image point under the first middle stays under the current middle.
    const ix = (p.mid[0] - p.tx) / p.scale;
    const iy = (p.mid[1] - p.ty) / p.scale;
    this.scale = s;
    this.tx = now.mid[0] - ix * s;
    this.ty = now.mid[1] - iy * s;
    this.repaint();
  }

  // --- pointer
  down(e) {
    this.canvas.focus({ preventScroll: true });
    const sp = this.local(e);
    if (e.pointerType === 'touch') {
      this.touches.set(e.pointerId, sp);
      if (this.touches.size === 2) { this.startPinch(); return; }
      if (this.touches.size > 2 || this.pinch) return;
    }
    if (e.button === 1 || (e.button === 0 && this.space) || e.button === 2) {
      this.drag = { type: 'pan', start: sp, tx: this.tx, ty: this.ty };
      this.canvas.setPointerCapture(e.pointerId);
      e.preventDefault();
      return;
    }
    if (e.button !== 0 || !this.image) return;
    const ip = this.toImage(sp);
    if (this.tool === 'comment') { this.hooks.comment?.(ip[0], ip[1]); return; }
    if (this.tool === 'select' || this.readOnly) {
      if (!this.readOnly && this.placeKeypoint(ip)) return;
      const handle = !this.readOnly && this.hitHandle(sp);
      // A drag checkpoints once it moves the shape (a click only selects).
      if (handle) {
        this.drag = { type: 'vertex', ...handle, moved: false };
        if (handle.shape.kind === 'points') this.chooseKeypoint(handle.index);
      } else {
        const s = this.hitShape(sp);
        this.select(s ? s._id : null, s?.kind === 'points' ? this.keypointAt(s, sp) : null);
        if (s && !this.readOnly && !s._locked) {
          this.drag = { type: 'move', shape: s, last: ip, moved: false };
        } else {
          this.drag = { type: 'pan', start: sp, tx: this.tx, ty: this.ty };
        }
      }
      this.canvas.setPointerCapture(e.pointerId);
      return;
    }
    if (this.tool === 'rectangle' || this.tool === 'rotated_rectangle') {
      const label = this.labelFor(this.tool);
      if (!label) { this.hooks.toast?.(`No label is drawn as ${this.tool.replace('_', ' ')}`); return; }
      this.draft = { kind: this.tool, label: label.name, points: [ip, ip] };
      this.drag = { type: 'draw' };
      this.canvas.setPointerCapture(e.pointerId);
      this.repaint();
      return;
    }
    if (this.tool === 'polygon' || this.tool === 'polyline' || this.tool === 'points') {
      if (!this.startDraft()) return;
      const pts = this.draft.points;
      if (this.tool === 'points') { this.addDraftKeypoint(ip, e.shiftKey || this.occludeNext ? OCCLUDED : VISIBLE); return; }
      if (this.tool === 'polygon' && pts.length >= 3) {
        const [fx, fy] = this.toScreen(pts[0]);
        if (Math.hypot(fx - sp[0], fy - sp[1]) <= CLOSE) { this.finishDraft(); return; }
      }
      pts.push(ip);
      this.draftHint();
      this.repaint();
    }
  }

  move(e) {
    const sp = this.local(e);
    if (this.touches.has(e.pointerId)) {
      this.touches.set(e.pointerId, sp);
      if (this.pinch) { if (this.touches.size === 2) this.movePinch(); return; }
    }
    this.pointer = sp;
    const d = this.drag;
    if (d?.type === 'pan') {
      this.tx = d.tx + sp[0] - d.start[0];
      this.ty = d.ty + sp[1] - d.start[1];
      this.repaint();
      return;
    }
    const ip = this.toImage(sp);
    if (d?.type === 'draw') {
      this.draft.points[1] = ip;
    } else if (d?.type === 'vertex') {
      if (!d.moved) this.checkpoint([d.shape], true);
      d.moved = true;
      const s = d.shape;
      if (s.kind === 'rectangle' || s.kind === 'rotated_rectangle') {
        const [[x1, y1], [x2, y2]] = s.points;
        const xs = [x1, x2, x2, x1];
        const ys = [y1, y1, y2, y2];
        // Corner i moves; the opposite corner (i + 2) stays.
        const o = (d.index + 2) % 4;
        s.points = [[xs[o], ys[o]], ip];
      } else {
        s.points[d.index] = ip;
      }
    } else if (d?.type === 'move') {
      const s = d.shape;
      let dx = ip[0] - d.last[0];
      let dy = ip[1] - d.last[1];
      const W = this.width;
      const H = this.height;
      s.points.forEach(([x, y], i) => {
        if (!placed(s, i)) return;
        dx = Math.max(-x, Math.min(W - x, dx));
        dy = Math.max(-y, Math.min(H - y, dy));
      });
      if ((dx || dy) && !d.moved) { this.checkpoint([s], true); d.moved = true; }
      s.points = s.points.map(([x, y], i) => (placed(s, i) ? [x + dx, y + dy] : [x, y]));
      d.last = [d.last[0] + dx, d.last[1] + dy];
    } else if (!this.draft) {
      return;
    }
    this.repaint();
  }

  up(e) {
    if (this.touches.delete(e.pointerId) && this.pinch) {
      if (!this.touches.size) { this.pinch = null; this.repaint(); }
      return;
    }
    const d = this.drag;
    this.drag = null;
    if (this.canvas.hasPointerCapture?.(e.pointerId)) this.canvas.releasePointerCapture(e.pointerId);
    if (!d) return;
    if (d.type === 'pan') this.repaint();
    if (d.type === 'draw') {
      const [[x1, y1], [x2, y2]] = this.draft.points;
      const draft = this.draft;
      this.draft = null;
      if (Math.abs(x2 - x1) * this.scale < 3 || Math.abs(y2 - y1) * this.scale < 3) { this.repaint(); return; }
      const shape = { label: draft.label, kind: draft.kind, points: [[Math.min(x1, x2), Math.min(y1, y2)], [Math.max(x1, x2), Math.max(y1, y2)]] };
      if (draft.kind === 'rotated_rectangle') shape.angle = 0;
      this.add(shape);
    } else if ((d.type === 'vertex' || d.type === 'move') && d.moved) {
      const s = d.shape;
      if (s.kind === 'rectangle' || s.kind === 'rotated_rectangle') {
        const [[x1, y1], [x2, y2]] = s.points;
        s.points = [[Math.min(x1, x2), Math.min(y1, y2)], [Math.max(x1, x2), Math.max(y1, y2)]];
      }
      this.changed(s);
      this.hooks.select?.(s);
    }
  }

  wheel(e) {
    e.preventDefault();
    const [sx, sy] = this.local(e);
    clearTimeout(this.wheelEnd);
    this.wheelEnd = setTimeout(() => { this.wheelEnd = 0; this.repaint(); }, WHEEL_END);
    this.zoomAt(Math.pow(1.0015, -e.deltaY * (e.deltaMode === 1 ? 33 : 1)), sx, sy);
  }

  // --- drafts (polygon, polyline, keypoints)
  /** The draft of the current tool, begun if need be; null when no label is drawn with it. */
  startDraft() {
    if (this.draft) return this.draft;
    const label = this.labelFor(this.tool);
    if (!label) { this.hooks.toast?.(`No label is drawn as ${this.tool.replace('_', ' ')}`); return null; }
    this.draft = { kind: this.tool, label: label.name, points: [] };
    if (this.tool === 'points') this.draft.visibility = [];
    return this.draft;
  }
  /** Adds a keypoint with visibility `v` to the draft; the last named one finishes the set. */
  addDraftKeypoint(p, v) {
    const d = this.draft;
    d.points.push(p);
    d.visibility.push(v);
    this.occludeNext = false;
    const names = this.label(d.label)?.keypoints || [];
    if (names.length && d.points.length === names.length) { this.finishDraft(); return; }
    this.draftHint();
    this.repaint();
  }
  draftHint() {
    const d = this.draft;
    if (!d) { this.hooks.draft?.(''); return; }
    if (d.kind === 'points') {
      const names = this.label(d.label)?.keypoints || [];
      const as = this.occludeNext ? ' as occluded' : '';
      this.hooks.draft?.(names.length
        ? `${d.label}: click ${names[d.points.length]}${as} (${d.points.length + 1}/${names.length}); O or Shift+click: occluded; N: not in the image; Backspace undoes; Esc cancels`
        : `${d.label}: click points${as}, Enter finishes; O or Shift+click: occluded`);
    } else {
      this.hooks.draft?.(`${d.kind} ${d.label}: ${d.points.length} points; ${d.kind === 'polygon' ? 'click the first point or press Enter to close' : 'Enter or double-click finishes'}; Backspace removes the last; Esc cancels`);
    }
  }
  finishDraft() {
    const d = this.draft;
    if (!d) return;
    const need = d.kind === 'polygon' ? 3 : d.kind === 'polyline' ? 2 : 1;
    const names = d.kind === 'points' ? this.label(d.label)?.keypoints || [] : [];
    if (d.points.length < need || (names.length && d.points.length !== names.length)) {
      this.hooks.toast?.(names.length ? `place all ${names.length} keypoints` : `a ${d.kind} needs at least ${need} points`);
      return;
    }
    if (d.visibility?.every((v) => v === NOT_LABELLED)) {
      this.hooks.toast?.('At least one keypoint must be labelled');
      this.popDraftPoint();
      return;
    }
    this.draft = null;
    this.occludeNext = false;
    this.hooks.draft?.('');
    const shape = { label: d.label, kind: d.kind, points: d.points };
    if (d.visibility?.some((v) => v !== VISIBLE)) shape.visibility = d.visibility;
    this.add(shape);
  }
  cancelDraft() {
    if (!this.draft) return;
    this.draft = null;
    this.occludeNext = false;
    this.hooks.draft?.('');
    this.repaint();
  }
  popDraftPoint() {
    if (!this.draft) return false;
    this.draft.points.pop();
    this.draft.visibility?.pop();
    if (!this.draft.points.length) this.cancelDraft();
    else { this.draftHint(); this.repaint(); }
    return true;
  }

  // --- drawing
  draw() {
    const { ctx, canvas } = this;
    const dpr = window.devicePixelRatio || 1;
    this.fitCanvas();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    canvas.dataset.scale = String(this.scale);
    canvas.dataset.tx = String(this.tx);
    canvas.dataset.ty = String(this.ty);
    if (!this.image) return;
    ctx.setTransform(dpr * this.scale, 0, 0, dpr * this.scale, dpr * this.tx, dpr * this.ty);
    ctx.imageSmoothingEnabled = this.scale < 2;
    const { brightness, contrast } = this.look;
    if (brightness !== 100 || contrast !== 100) ctx.filter = `brightness(${brightness}%) contrast(${contrast}%)`;
    ctx.drawImage(this.image, 0, 0, this.width, this.height);
    ctx.filter = 'none';
    // Zoomed past the preview's resolution: the workspace fetches the original.
    if (this.image.naturalWidth < this.width && dpr * this.scale * this.width > this.image.naturalWidth) this.hooks.sharper?.();
    if (this.layerStale || (!this.sameView() && !this.gesture())) this.drawLayer();
    else if (this.dirty.length) this.drawDirty();
    const v = this.layerView;
    const k = this.scale / v.scale;
    ctx.setTransform(k, 0, 0, k, dpr * (this.tx - v.tx * k), dpr * (this.ty - v.ty * k));
    ctx.drawImage(this.layer, 0, 0);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const s = this.selectedShape();
    if (s && !s._hidden) this.drawShape(s, true);
    if (this.draft) this.drawDraft();
    for (const p of this.pins) this.drawPin(p);
  }

  /** Runs `fn` with the drawing helpers drawing into the layer. */
  intoLayer(fn) {
    const main = this.ctx;
    this.ctx = this.lctx;
    try { fn(); } finally { this.ctx = main; }
  }

  /** Draws every shape but the selected one into the layer, for the current view. */
  drawLayer() {
    const { layer, lctx, canvas } = this;
    if (layer.width !== canvas.width || layer.height !== canvas.height) {
      layer.width = canvas.width;
      layer.height = canvas.height;
    }
    const dpr = window.devicePixelRatio || 1;
    lctx.setTransform(1, 0, 0, 1, 0, 0);
    lctx.clearRect(0, 0, layer.width, layer.height);
    lctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    // Every box is made here, while the shapes are walked anyway, not by the first click.
    this.intoLayer(() => { for (const s of this.shapes) { this.box(s); if (!s._hidden && s._id !== this.selected) this.drawShape(s, false); } });
    this.layerView = { scale: this.scale, tx: this.tx, ty: this.ty, w: canvas.width, h: canvas.height };
    this.layerStale = false;
    this.dirty = [];
  }

  /** Draws the layer again inside its dirty rectangles only: the shapes whose box meets one. */
  drawDirty() {
    const { lctx } = this;
    const dpr = window.devicePixelRatio || 1;
    const rects = this.dirty;
    this.dirty = [];
    lctx.save();
    lctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    lctx.beginPath();
    for (const [x1, y1, x2, y2] of rects) {
      lctx.clearRect(x1, y1, x2 - x1, y2 - y1);
      lctx.rect(x1, y1, x2 - x1, y2 - y1);
    }
    lctx.clip();
    // The rectangles grown by a shape's reach outside its box, in image pixels: one test per box.
    const areas = rects.map(([p, q, r, t]) => [...this.toImage([p - PAD, q - PAD], false), ...this.toImage([r + PAD, t + PAD], false)]);
    const meets = ([a, b, c, d]) => areas.some(([p, q, r, t]) => a < r && c > p && b < t && d > q);
    this.intoLayer(() => {
      for (const s of this.shapes) if (!s._hidden && s._id !== this.selected && meets(this.box(s))) this.drawShape(s, false);
    });
    lctx.restore();
  }

  path(pts, close) {
    const { ctx } = this;
    ctx.beginPath();
    pts.forEach((p, i) => { const [x, y] = this.toScreen(p); if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
    if (close) ctx.closePath();
  }

  drawShape(s, selected) {
    const { ctx } = this;
    const color = this.label(s.label)?.color || '#ffffff';
    ctx.lineWidth = selected ? 3 : 2;
    ctx.strokeStyle = color;
    ctx.fillStyle = alpha(color, Math.min(1, this.look.opacity * (selected ? 2 : 1)));
    ctx.setLineDash(s.occluded ? [6, 4] : []);
    if (s.kind === 'rectangle' || s.kind === 'rotated_rectangle' || s.kind === 'polygon') {
      this.path(s.kind === 'polygon' ? s.points : corners(s), true);
      ctx.fill();
      ctx.stroke();
    } else if (s.kind === 'polyline') {
      this.path(s.points, false);
      ctx.stroke();
    } else if (s.kind === 'points') {
      this.drawKeypoints(s, color, selected);
    }
    ctx.setLineDash([]);
    const anchor = s.kind === 'rectangle' || s.kind === 'rotated_rectangle' ? corners(s)[0] : s.points.find((_, i) => placed(s, i));
    if (anchor && (selected || this.shapes.length <= LABELS_MAX)) {
      const [x, y] = this.toScreen(anchor);
      this.text(s.label, x, y - 6, color);
    }
    // A keypoint's mark is its handle (a square over it would hide an occluded one's look).
    if (selected && !this.readOnly && !s._locked && s.kind !== 'points') {
      for (const p of this.vertexHandles(s)) {
        const [x, y] = this.toScreen(p);
        ctx.fillStyle = '#fff';
        ctx.strokeStyle = '#000';
        ctx.lineWidth = 1;
        ctx.fillRect(x - HANDLE, y - HANDLE, HANDLE * 2, HANDLE * 2);
        ctx.strokeRect(x - HANDLE, y - HANDLE, HANDLE * 2, HANDLE * 2);
      }
    }
  }

  /**
   * A keypoint set: skeleton edges between labelled keypoints (dashed to an occluded one, or all
   * of them when the set is occluded), visible
   * keypoints as filled dots, occluded ones as hollow rings; keypoints not labelled are not drawn.
   */
  drawKeypoints(s, color, selected) {
    const { ctx } = this;
    const label = this.label(s.label);
    for (const [a, b] of label?.skeleton || []) {
      if (!s.points[a] || !s.points[b] || !labelled(s, a) || !labelled(s, b)) continue;
      const [occludedA, occludedB] = [visibilityOf(s, a) === OCCLUDED, visibilityOf(s, b) === OCCLUDED];
      const [pa, pb] = [this.toScreen(s.points[a]), this.toScreen(s.points[b])];
      ctx.setLineDash(s.occluded || occludedA || occludedB ? [6, 4] : []);
      ctx.beginPath();
      ctx.moveTo(...(occludedA ? towards(pa, pb, RING_GAP) : pa));
      ctx.lineTo(...(occludedB ? towards(pb, pa, RING_GAP) : pb));
      ctx.stroke();
    }
    ctx.setLineDash([]);
    s.points.forEach((p, i) => {
      if (!labelled(s, i)) return;
      const [x, y] = this.toScreen(p);
      this.keypointMark(x, y, color, visibilityOf(s, i) === OCCLUDED, selected ? 5 : 4);
      if (selected && i === this.keypoint) this.ring(x, y, 9);
      if (selected && label?.keypoints[i]) this.text(label.keypoints[i], x + 7, y - 7);
    });
  }
  keypointMark(x, y, color, occluded, r) {
    const { ctx } = this;
    ctx.beginPath();
    if (occluded) {
      ctx.arc(x, y, r + 1, 0, Math.PI * 2);
      ctx.strokeStyle = '#000';
      ctx.lineWidth = 4;
      ctx.stroke();
      ctx.strokeStyle = color;
      ctx.lineWidth = 2;
      ctx.stroke();
      return;
    }
    ctx.arc(x, y, r, 0, Math.PI * 2);
    ctx.fillStyle = color;
    ctx.fill();
    ctx.strokeStyle = '#000';
    ctx.lineWidth = 1;
    ctx.stroke();
  }
  /** The chosen keypoint's mark: a white ring around it. */
  ring(x, y, r) {
    const { ctx } = this;
    ctx.beginPath();
    ctx.arc(x, y, r, 0, Math.PI * 2);
    ctx.strokeStyle = '#fff';
    ctx.lineWidth = 2;
    ctx.stroke();
  }

  text(t, x, y, bg = '#000') {
    const { ctx } = this;
    ctx.font = '12px system-ui, sans-serif';
    const w = ctx.measureText(t).width;
    ctx.fillStyle = 'rgba(0,0,0,.65)';
    ctx.fillRect(x - 2, y - 12, w + 4, 15);
    ctx.fillStyle = '#fff';
    ctx.fillText(t, x, y);
    void bg;
  }

  drawDraft() {
    const { ctx } = this;
    const d = this.draft;
    const color = this.label(d.label)?.color || '#fff';
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.setLineDash([6, 4]);
    if (d.kind === 'rectangle' || d.kind === 'rotated_rectangle') {
      this.path(corners({ kind: 'rectangle', points: d.points }), true);
      ctx.stroke();
    } else {
      const shown = d.points.filter((_, i) => d.visibility?.[i] !== NOT_LABELLED);
      if (this.pointer && d.kind !== 'points') shown.push(this.toImage(this.pointer));
      this.path(shown, false);
      ctx.stroke();
      ctx.setLineDash([]);
      d.points.forEach((p, i) => {
        const v = d.visibility?.[i] ?? VISIBLE;
        if (v === NOT_LABELLED) return;
        const [x, y] = this.toScreen(p);
        ctx.fillStyle = color;
        ctx.strokeStyle = color;
        if (v === OCCLUDED) ctx.strokeRect(x - 3, y - 3, 6, 6);
        else ctx.fillRect(x - 3, y - 3, 6, 6);
      });
    }
    ctx.setLineDash([]);
  }

  drawPin(p) {
    const { ctx } = this;
    const [x, y] = this.toScreen([p.x, p.y]);
    ctx.beginPath();
    ctx.arc(x, y, 9, 0, Math.PI * 2);
    ctx.fillStyle = p.resolved ? '#9aa0a6' : '#ffb000';
    ctx.fill();
    ctx.strokeStyle = '#000';
    ctx.lineWidth = 1.5;
    ctx.stroke();
    ctx.fillStyle = '#000';
    ctx.font = 'bold 11px system-ui, sans-serif';
    const t = String(p.n);
    ctx.fillText(t, x - ctx.measureText(t).width / 2, y + 4);
  }
}
