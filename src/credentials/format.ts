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
