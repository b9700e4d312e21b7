import { createHash } from 'node:crypto'
import http, { type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Recorded {
  method: string
  url: string
  headers: IncomingHttpHeaders
  rawHeaders: string[]
  bodyBytes: number
  bodySha256: string
}

export interface Upstream {
  url: string
  port: number
  requests: Recorded[]
  /** Replaces the default echo handler. */
  handle: ((req: http.IncomingMessage, res: http.ServerResponse, recorded: Recorded) => void) | null
  close(): Promise<void>
}

interface Teardown {
  teardown(fn: () => unknown): void
}

/** A real origin server on port 0 that records what reached it and echoes it back as JSON. */
export async function startUpstream (t: Teardown): Promise<Upstream> {
  const requests: Recorded[] = []
  const up: Upstream = {
    url: '',
    port: 0,
    requests,
    handle: null,
    close: async () => {}
  }
  const server = http.createServer((req, res) => {
    const hash = createHash('sha256')
    let bytes = 0
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length
      hash.update(chunk)
    })
    req.on('end', () => {
      const recorded: Recorded = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        bodyBytes: bytes,
        bodySha256: hash.digest('hex')
      }
      requests.push(recorded)
      if (up.handle !== null) {
        up.handle(req, res, recorded)
        return
      }
      res.setHeader('content-type', 'application/json')
      res.setHeader('x-upstream', 'echo')
      res.end(JSON.stringify(recorded))
    })
  })
  server.keepAliveTimeout = 5000
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  up.port = port
  up.url = `http://127.0.0.1:${port}`
  up.close = () => new Promise<void>(resolve => {
    server.closeAllConnections()
    server.close(() => resolve())
  })
  t.teardown(() => up.close())
  return up
}

export interface Response {
  statusCode: number
  headers: IncomingHttpHeaders
  body: Buffer
  text: string
  json<T = Record<string, unknown>>(): T
}

export interface RequestOptions {
  method?: string
  /** Header values given as arrays are sent as repeated header lines. */
  headers?: OutgoingHttpHeaders
  body?: Buffer | string | AsyncIterable<Buffer>
  /** The client's source address (any 127.x.y.z on Linux): one client of several. */
  localAddress?: string
}

/** A raw HTTP/1.1 request: the path goes on the wire byte for byte, headers may repeat. */
export function request (port: number, path: string, opts: RequestOptions = {}): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      path,
      method: opts.method ?? 'GET',
      headers: opts.headers,
      localAddress: opts.localAddress,
      agent: false
    }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const body = Buffer.concat(chunks)
        const text = body.toString('utf8')
        resolve({
          statusCode: res.statusCode ?? 0,
          headers: res.headers,
          body,
          text,
          json: <T>() => JSON.parse(text) as T
        })
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    const body = opts.body
    if (body === undefined) {
      req.end()
    } else if (typeof body === 'string' || Buffer.isBuffer(body)) {
      req.end(body)
    } else {
      void (async () => {
        for await (const chunk of body) {
          if (!req.write(chunk)) await new Promise(resolve => req.once('drain', resolve))
        }
        req.end()
      })().catch(reject)
    }
  })
}
