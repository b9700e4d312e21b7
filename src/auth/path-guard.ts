export type PathCheck =
  | { ok: true, path: string }
  | { ok: false }

const BAD: PathCheck = { ok: false }
const HEX = /^[0-9a-fA-F]{2}$/

/**
 * Whitespace a router may trim from a segment's ends (Spring's trimTokens, IIS),
 * and the invisible format characters that look like nothing at all.
 */
const EDGE_SPACE = /[\s\u0085\u180e\u200b-\u200d\u2060]/

/**
 * docs/DESIGN.md §2 step 1: reject request targets the upstream could read differently
 * from the policy. Returns the decoded path the policy matches on; the
 * upstream receives the raw path unchanged, which after these checks decodes
 * to the same path, and the raw query byte for byte.
 *
 * Refused in the path: anything but origin-form; dot segments; empty segments
 * (`//`, merged by many servers); `;` path parameters, raw or encoded (Tomcat
 * and Spring drop them); a backslash; `#`; control characters; encoded `/` `\`
 * `.` `%` (double encoding) NUL or any control byte; whitespace at either end
 * of a decoded segment or next to a dot in it (`/api/scans%20`,
 * `/api/scans%20.json`: some routers trim it); malformed percent-encoding or
 * UTF-8.
 *
 * The query is not a path (`?next=../../x&u=%2F%2e%2e` is data): it is only
 * checked for syntax (no `#`, every `%` followed by two hex digits) and never
 * decoded here.
 */
export function checkPath (rawUrl: string): PathCheck {
  if (rawUrl.length === 0 || rawUrl.charCodeAt(0) !== 47 /* / */) return BAD
  const q = rawUrl.indexOf('?')
  if (q !== -1 && !validQuery(rawUrl, q + 1)) return BAD
  const path = q === -1 ? rawUrl : rawUrl.slice(0, q)

  let percent = false
  let nonAscii = false
  let dotAfterSlash = false
  for (let i = 0, prev = 0; i < path.length; prev = path.charCodeAt(i), i++) {
    const c = path.charCodeAt(i)
    if (c < 0x20 || c === 0x7f || c === 0x5c /* \ */ || c === 0x23 /* # */ || c === 0x3b /* ; */) return BAD
    if (c === 47 && prev === 47) return BAD
    if (c === 0x25) percent = true
    else if (c === 0x2e && prev === 47) dotAfterSlash = true
    else if (c >= 0x80) nonAscii = true
  }
  if (dotAfterSlash) {
    for (const seg of path.split('/')) if (seg === '.' || seg === '..') return BAD
  }
  if (!percent && !nonAscii) return { ok: true, path }

  let decoded = path
  if (percent) {
    for (let i = path.indexOf('%'); i !== -1; i = path.indexOf('%', i + 1)) {
      const hex = path.slice(i + 1, i + 3)
      if (!HEX.test(hex)) return BAD
      const byte = parseInt(hex, 16)
      // / \ . % ; and NUL or any other control character
      if (byte === 0x2f || byte === 0x5c || byte === 0x2e || byte === 0x25 || byte === 0x3b || byte < 0x20 || byte === 0x7f) return BAD
    }
    try {
      decoded = decodeURIComponent(path)
    } catch {
      return BAD
    }
  }
  // A segment's ends, and either side of a dot in it (`scans%20.json` is `scans ` + a format suffix).
  for (const part of decoded.split(/[/.]/)) {
    if (part.length > 0 && (EDGE_SPACE.test(part.charAt(0)) || EDGE_SPACE.test(part.charAt(part.length - 1)))) return BAD
  }
  return { ok: true, path: decoded }
}

/** RFC 3986 query syntax as far as a proxy cares: no fragment, percent-escapes well formed. */
function validQuery (s: string, from: number): boolean {
  for (let i = s.indexOf('%', from); i !== -1; i = s.indexOf('%', i + 1)) {
    if (!isHex(s.charCodeAt(i + 1)) || !isHex(s.charCodeAt(i + 2))) return false
  }
  return s.indexOf('#', from) === -1
}

function isHex (c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102)
}
