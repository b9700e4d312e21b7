import type { IncomingHttpHeaders } from 'node:http'

export type CredentialSource = 'x-api-key' | 'authorization'

export type Extracted =
  | { found: true, value: string, source: CredentialSource }
  | { found: false, reason: 'missing' | 'malformed' }

function count (rawHeaders: readonly string[], name: string): number {
  let n = 0
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const h = rawHeaders[i] as string
    if (h.length === name.length && h.toLowerCase() === name) n++
  }
  return n
}

/**
 * docs/DESIGN.md §2 step 3: the credential comes from `X-API-Key` or `Authorization:
 * Bearer`; one of them, once. Node joins repeated X-API-Key values with ", "
 * (which fails the format check) but keeps only the first Authorization, so
 * that one is counted on the raw headers. Never from the query string.
 */
export function extractCredential (headers: IncomingHttpHeaders, rawHeaders: readonly string[]): Extracted {
  const apiKey = headers['x-api-key']
  const auth = headers.authorization
  let bearer: string | undefined
  if (auth !== undefined && auth.length > 7 && auth.slice(0, 7).toLowerCase() === 'bearer ') {
    const v = auth.slice(7).trim()
    if (v.startsWith('hg_')) bearer = v
  }
  if (bearer !== undefined) {
    if (apiKey !== undefined || count(rawHeaders, 'authorization') > 1) return { found: false, reason: 'malformed' }
    return { found: true, value: bearer, source: 'authorization' }
  }
  if (apiKey === undefined) return { found: false, reason: 'missing' }
  if (typeof apiKey !== 'string') return { found: false, reason: 'malformed' }
  return { found: true, value: apiKey, source: 'x-api-key' }
}
