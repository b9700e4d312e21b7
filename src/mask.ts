/** What a credential looks like in free text: the format's two kinds, any case of hex, 4+ digits. */
const CREDENTIAL_LIKE = /hg_(pat|key)_[0-9A-Fa-f]{4,}/g
const KEEP = 10

/** Masks anything credential-shaped in free text (paths in logs, error messages): the 10-character prefix stays. */
export function maskCredentials (text: string): string {
  return text.replace(CREDENTIAL_LIKE, m => m.slice(0, KEEP) + '…')
}
