// What a save sends when little changed: the splices that turn the saved version's shapes into
// the current ones (PATCH …/annotations). Shapes are compared by their JSON text, so no
// per-shape id is needed; positions index the saved version, which If-Match pins.

/**
 * Splices `[at, remove, texts]` (positions in `base`, in order) that turn `base` into `now`,
 * both lists of shapes' JSON texts. The shapes kept are the longest run of unchanged ones in
 * order (a moved shape is one removal and one insertion, not a rewrite of all in between).
 */
export function splices(base, now) {
  const where = new Map();
  base.forEach((t, j) => {
    const list = where.get(t);
    if (list) list.push(j); else where.set(t, [j]);
  });
  // For each current shape, the first base position with the same text not taken yet (or -1).
  const js = now.map((t) => where.get(t)?.shift() ?? -1);
  // The longest increasing run of those positions (patience sorting, with back links).
  const tails = [];
  const tailAt = [];
  const back = new Array(now.length).fill(-1);
  js.forEach((j, i) => {
    if (j < 0) return;
    let lo = 0;
    let hi = tails.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (tails[mid] < j) lo = mid + 1; else hi = mid;
    }
    tails[lo] = j;
    tailAt[lo] = i;
    back[i] = lo > 0 ? tailAt[lo - 1] : -1;
  });
  const kept = [];
  for (let i = tails.length ? tailAt[tails.length - 1] : -1; i >= 0; i = back[i]) kept.push(i);
  kept.reverse();
  const out = [];
  let [i0, j0] = [0, 0];
  for (const i of [...kept, now.length]) {
    const j = i < now.length ? js[i] : base.length;
    if (i > i0 || j > j0) out.push([j0, j - j0, now.slice(i0, i)]);
    [i0, j0] = [i + 1, j + 1];
  }
  return out;
}

/** The PATCH body for going from `base` to `now` (lists of shapes' JSON texts). */
export function patchBody(base, now) {
  const list = splices(base, now).map(([at, remove, texts]) => `[${at},${remove},[${texts.join(',')}]]`);
  return `{"base_len":${base.length},"splices":[${list.join(',')}]}`;
}
