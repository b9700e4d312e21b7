const SANE_REQUEST_ID = /^[A-Za-z0-9._:/+=-]{1,128}$/

/** The inbound X-Request-Id when syntactically sane, else null (a new one is generated). */
export function saneRequestId (value: string | string[] | undefined): string | null {
  return typeof value === 'string' && SANE_REQUEST_ID.test(value) ? value : null
}
