import type { FastifyInstance } from 'fastify'
import type { Config } from '../config/schema.js'
import type { Logger } from '../logger.js'
import type { AssertionSigner } from './assertion.js'

/**
 * docs/DESIGN.md §9: after the auth hook has passed a request with a principal,
 * attaches its signed assertion to request.hg for the proxy to send. Register
 * it right after the auth hook, in the same (proxy) context. Requests the
 * sidecar answers itself (self-service) get none: nothing is forwarded.
 */
export function registerAssertionHook (app: FastifyInstance, signer: AssertionSigner): void {
  app.addHook('onRequest', (request, _reply, done: (err?: Error) => void) => {
    const hg = request.hg
    if (hg === null || hg.principal === null || hg.decision?.local === true) {
      done()
      return
    }
    const out = signer.assertionFor(hg.principal)
    if (typeof out === 'string') {
      hg.assertion = out
      done()
      return
    }
    // A request is never forwarded without its assertion: a signing failure is a 500 (logged by the error handler).
    out.then(token => {
      hg.assertion = token
      done()
    }, (err: unknown) => done(err instanceof Error ? err : new Error(String(err))))
  })
}

/** The assertion signer when enabled: its keys read (or generated) before anything else starts, so a bad key file fails fast. */
export async function createAssertion (config: Config, log: Logger): Promise<AssertionSigner | null> {
  const a = config.assertion
  if (!a.enabled) return null
  if (a.audience === null) throw new Error('assertion.audience is required when assertion.enabled is true')
  // Loaded only when enabled (off by default): jose stays out of a sidecar that signs nothing.
  const { createAssertionSigner, loadAssertionKeys } = await import('./assertion.js')
  const keys = await loadAssertionKeys(a.keyFile)
  if (keys.generated) {
    log.info({ kid: keys.signing.kid }, 'assertion signing key generated at start (no assertion.keyFile): this process publishes it alone')
  } else {
    log.info({ kid: keys.signing.kid, published: keys.published.map(k => k.kid) }, 'assertion signing key loaded')
  }
  return createAssertionSigner({ keys, issuer: a.issuer, audience: a.audience, ttlSeconds: a.ttlSeconds, maxEntries: a.cacheMaxEntries })
}
