import { createHash, randomBytes } from 'node:crypto'
import bcrypt from 'bcrypt'
import { lookupTag, PREFIX_LENGTH, type CredentialKind } from './format.js'

export interface MintedSecret {
  token: string
  prefix: string
  /** lookupTag(token): stored with the credential (docs/DESIGN.md §2 step 4). */
  tag: string
}

/** `hg_pat_` / `hg_key_` + 48 lowercase hex from the CSPRNG (192 bits). */
export function generateCredential (kind: CredentialKind): MintedSecret {
  const token = (kind === 'pat' ? 'hg_pat_' : 'hg_key_') + randomBytes(24).toString('hex')
  return { token, prefix: token.slice(0, PREFIX_LENGTH), tag: lookupTag(token) }
}

export function hashPat (token: string, cost: number): Promise<string> {
  return bcrypt.hash(token, cost)
}

export function sha256 (token: string): Buffer {
  return createHash('sha256').update(token).digest()
}
