// Formatting values for people. Everything here returns plain strings (rendered as text by dom.js).

/** "3 s", "4 min 10 s", "2 h 5 min", "3 d 4 h" for a duration in milliseconds. */
export function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const hours = Math.floor(m / 60);
  if (hours < 24) return `${hours} h ${m % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** `{a: "1", b: "2"}` -> "a=1, b=2" (sorted by key); "—" for none. */
export function metadataText(metadata) {
  const keys = Object.keys(metadata || {}).sort();
  return keys.length ? keys.map((k) => `${k}=${metadata[k]}`).join(', ') : '—';
}

/** Metadata as the JSON text shown in an editor. */
export function metadataJson(metadata) {
  return JSON.stringify(metadata || {}, null, 2);
}

/** Parse an editor's JSON object of string values; throws an Error with a readable message. */
export function parseMetadata(text) {
  const trimmed = text.trim();
  if (!trimmed) return {};
  let value;
  try {
    value = JSON.parse(trimmed);
  } catch (error) {
    throw new Error(`metadata is not valid JSON: ${error.message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error('metadata must be a JSON object, such as {"zone": "a"}');
  }
  const out = {};
  for (const [key, item] of Object.entries(value)) out[key] = typeof item === 'string' ? item : JSON.stringify(item);
  return out;
}

/** "yes"/"no". */
export function yesNo(value) {
  return value ? 'yes' : 'no';
}

/** The name Nacos shows for a namespace id ("" is public). */
export function namespaceLabel(namespaces, id) {
  const found = namespaces.find((n) => n.namespace === id);
  return found ? found.namespaceShowName || id || 'public' : id || 'public';
}
