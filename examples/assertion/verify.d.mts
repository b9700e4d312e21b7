import type { JWTPayload } from 'jose'

export interface VerifierOptions {
  jwksUrl?: string
  audience: string
  issuer?: string
}

export function createVerifier (opts: VerifierOptions): (headers: Record<string, string | string[] | undefined>) => Promise<JWTPayload>
