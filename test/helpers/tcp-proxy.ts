import net from 'node:net'

export interface TcpProxy {
  port: number
  url(scheme: string, path?: string): string
  /** Drops every connection and refuses new ones: the service looks down. */
  cut(): void
  /** Accepts and forwards again. */
  restore(): void
  /** Keeps what clients send from the service (buffered, in order) until `release`: the service looks slow. */
  hold(): void
  /** Forwards what `hold` kept, and everything after it. */
  release(): void
  close(): Promise<void>
}

interface Teardown {
  teardown(fn: () => unknown): void
}

/** A TCP relay in front of a real service, so a test can take it away and bring it back. */
export async function startTcpProxy (t: Teardown, targetHost: string, targetPort: number): Promise<TcpProxy> {
  let up = true
  let held: Array<() => void> | null = null
  const sockets = new Set<net.Socket>()
  const server = net.createServer(client => {
    if (!up) {
      client.destroy()
      return
    }
    const upstream = net.connect(targetPort, targetHost)
    sockets.add(client)
    sockets.add(upstream)
    const drop = (): void => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on('error', drop).on('close', drop)
    upstream.on('error', drop).on('close', drop)
    client.on('data', (chunk: Buffer) => {
      if (held === null) upstream.write(chunk)
      else held.push(() => upstream.write(chunk))
    })
    upstream.pipe(client)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  const proxy: TcpProxy = {
    port,
    url: (scheme, path = '') => `${scheme}://127.0.0.1:${port}${path}`,
    cut () {
      up = false
      for (const s of sockets) s.destroy()
      sockets.clear()
    },
    restore () {
      up = true
    },
    hold () {
      held ??= []
    },
    release () {
      const kept = held ?? []
      held = null
      for (const write of kept) write()
    },
    close: () => new Promise<void>(resolve => {
      proxy.cut()
      server.close(() => resolve())
    })
  }
  t.teardown(() => proxy.close())
  return proxy
}
