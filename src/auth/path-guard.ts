export type PathCheck =
  | { ok: true, path: string }
  | { ok: false }

const HEX = /^[0-9a-fA-F]{2}$/

/**
 * docs/DESIGN.md §2 step 1: reject request targets the upstream could read differently
 * from the policy. Returns the decoded path the policy matches on; the
 * upstream receives the raw target unchanged, which after these checks
 * decodes to the same path.
 *
 * Refused: anything but origin-form; dot segments (also `..;param`, Tomcat's
 * reading); a backslash; encoded `/` `\` `.` NUL; encoded `%` (double
 * encoding); control characters; malformed percent-encoding anywhere in the
 * target (the query too, since the proxy must parse it).
 */
export function checkPath (rawUrl: string): PathCheck {
  if (rawUrl.length === 0 || rawUrl.charCodeAt(0) !== 47 /* / */) return { ok: false }
  const q = rawUrl.indexOf('?')
  const path = q === -1 ? rawUrl : rawUrl.slice(0, q)
  if (path.includes('#')) return { ok: false }
  const hasPercent = rawUrl.includes('%')
  if (!hasPercent && !path.includes('\\') && !path.includes('/.') && !hasControl(path)) return { ok: true, path }

  if (path.includes('\\') || hasControl(path)) return { ok: false }
  for (const seg of path.split('/')) {
    const bare = seg.split(';', 1)[0]
    if (bare === '.' || bare === '..') return { ok: false }
  }
  if (!hasPercent) return { ok: true, path }

  for (let i = path.indexOf('%'); i !== -1; i = path.indexOf('%', i + 1)) {
    const hex = path.slice(i + 1, i + 3)
    if (!HEX.test(hex)) return { ok: false }
    const byte = parseInt(hex, 16)
    // / \ . % and NUL or any other control character
    if (byte === 0x2f || byte === 0x5c || byte === 0x2e || byte === 0x25 || byte < 0x20 || byte === 0x7f) return { ok: false }
  }
  let decoded: string
  try {
    decoded = decodeURIComponent(path)
    if (q !== -1) decodeURIComponent(rawUrl.slice(q + 1))
  } catch {
    return { ok: false }
  }
  return { ok: true, path: decoded }
}

function hasControl (s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) return true
  }
  return false
}
