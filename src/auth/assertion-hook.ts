import type { FastifyInstance } from 'fastify'
import type { AssertionSigner } from './assertion.js'

/**
 * DESIGN.md 9: after the auth hook has passed a request with a principal,
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
