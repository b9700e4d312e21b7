/** What a credential looks like in free text: the format's two kinds, any case, 4+ hex digits. */
const CREDENTIAL_LIKE = /hg_(pat|key)_[0-9A-Fa-f]{4,}/gi
const KEEP = 10

/** One character of a credential, literally or percent-encoded any number of times (`h`, `%68`, `%2568`). */
function charOrEscape (c: string): string {
  const code = c.charCodeAt(0)
  const hex = code.toString(16)
  const escaped = /[a-z]/.test(c) ? `%(?:25)*(?:${hex}|${(code - 32).toString(16)})` : `%(?:25)*${hex}`
  return `(?:${c}|${escaped.replace(/[a-f]/g, h => `[${h}${h.toUpperCase()}]`)})`
}

const HEX_DIGIT = '(?:[0-9A-Fa-f]|%(?:25)*(?:3[0-9]|[46][1-6]))'
/** The same shape with any of its characters percent-encoded: a path may carry it that way. */
const ENCODED_CREDENTIAL_LIKE = new RegExp(
  `${[...'hg_'].map(c => charOrEscape(c)).join('')}(?:${[...'pat'].map(c => charOrEscape(c)).join('')}|${[...'key'].map(c => charOrEscape(c)).join('')})${charOrEscape('_')}${HEX_DIGIT}{4,}`,
  'gi'
)

function decodeAll (s: string): string {
  let out = s
  for (let i = 0; i < 8 && out.includes('%'); i++) {
    const next = out.replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)))
    if (next === out) break
    out = next
  }
  return out
}

/**
 * Masks anything credential-shaped in free text (paths in logs, error
 * messages): the 10-character prefix stays. Also when percent-encoded
 * (docs/DESIGN.md §2.1): `%68g_pat_...` is masked to its decoded prefix.
 */
export function maskCredentials (text: string): string {
  const plain = text.replace(CREDENTIAL_LIKE, m => m.slice(0, KEEP) + '…')
  if (!plain.includes('%')) return plain
  return plain.replace(ENCODED_CREDENTIAL_LIKE, m => decodeAll(m).slice(0, KEEP) + '…')
}
