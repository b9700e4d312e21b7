import { hash } from 'node:crypto'

export const CredentialKind = { pat: 'pat', apiKey: 'api_key' } as const
export type CredentialKind = typeof CredentialKind[keyof typeof CredentialKind]

export const CREDENTIAL_LENGTH = 55
export const PREFIX_LENGTH = 10
const HEX_LENGTH = 48

export interface ParsedCredential {
  kind: CredentialKind
  /** The whole credential: a secret, never logged. */
  value: string
  /** First 10 characters: not secret, shown in lists and logs. */
  prefix: string
}

function isLowerHex (s: string, from: number): boolean {
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false
  }
  return true
}

/** Parses `hg_pat_` / `hg_key_` + 48 lowercase hex; anything else is null. No I/O. */
export function parseCredential (value: string): ParsedCredential | null {
  if (value.length !== CREDENTIAL_LENGTH || !value.startsWith('hg_')) return null
  let kind: CredentialKind
  if (value.startsWith('pat_', 3)) kind = CredentialKind.pat
  else if (value.startsWith('key_', 3)) kind = CredentialKind.apiKey
  else return null
  if (!isLowerHex(value, CREDENTIAL_LENGTH - HEX_LENGTH)) return null
  return { kind, value, prefix: value.slice(0, PREFIX_LENGTH) }
}

/**
 * The lookup tag (docs/DESIGN.md §2 step 4): the first 64 bits of SHA-256 of the
 * whole credential, as the decimal text of a signed bigint (the column's type).
 * Not secret: 64 bits of a digest of a 192-bit random secret leave 128 bits
 * unknown (docs/DESIGN.md §2.2). Selects a PAT's row among the millions that
 * share its display prefix, so a valid PAT costs one bcrypt compare and a wrong
 * one none.
 */
export function lookupTag (credential: string): string {
  return hash('sha256', credential, 'buffer').readBigInt64BE(0).toString()
}
