import http from 'node:http'
import type { AddressInfo } from 'node:net'

export interface DemoUpstream {
  url: string
  close(): Promise<void>
}

/** The built-in upstream when no UPSTREAM_URL is set: echoes what the sidecar forwarded. */
export async function startDemoUpstream (): Promise<DemoUpstream> {
  const server = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      const identity = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith('x-hg-') || k.startsWith('x-forwarded-') || k === 'x-request-id'))
      res.setHeader('content-type', 'application/json; charset=utf-8')
      res.end(JSON.stringify({
        upstream: 'hg-auth-sidecar demo upstream',
        method: req.method,
        path: req.url,
        headers: identity,
        credentialForwarded: 'x-api-key' in req.headers || 'authorization' in req.headers
      }, null, 2) + '\n')
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>(resolve => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  }
}
