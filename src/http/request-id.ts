import { maskCredentials } from '../mask.js'

const SANE_REQUEST_ID = /^[A-Za-z0-9._:/+=-]{1,128}$/

/**
 * The inbound X-Request-Id when syntactically sane, else null (a new one is
 * generated). A credential-shaped one is not sane: the id is logged and
 * forwarded, a secret must be neither (docs/DESIGN.md §2.1).
 */
export function saneRequestId (value: string | string[] | undefined): string | null {
  return typeof value === 'string' && SANE_REQUEST_ID.test(value) && maskCredentials(value) === value ? value : null
}
