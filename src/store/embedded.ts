import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

export interface EmbeddedPostgres {
  url: string
  dataDir: string
  close(): Promise<void>
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * PGlite is one process's database: a second process opening the same
 * directory would corrupt it. A pid file keeps the CLI off a directory a
 * running sidecar holds.
 */
function lock (dir: string): () => void {
  const file = join(dir, 'hg-sidecar.pid')
  try {
    const pid = Number(readFileSync(file, 'utf8').trim())
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
      throw new Error(`the embedded database in ${dir} is in use by a running sidecar (pid ${pid}); stop it first, or use the admin API`)
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  writeFileSync(file, String(process.pid))
  return () => rmSync(file, { force: true })
}

/**
 * An embedded PostgreSQL (PGlite, on disk) served on a loopback port, so the
 * very same pg code, SQL and migrations run against it. PGlite has a single
 * session: the pool talking to it must have one connection.
 */
export async function startEmbeddedPostgres (dataDir: string): Promise<EmbeddedPostgres> {
  const dir = resolve(dataDir)
  mkdirSync(dir, { recursive: true })
  const unlock = lock(dir)
  try {
    const { PGlite } = await import('@electric-sql/pglite')
    const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket')
    const db = await PGlite.create(join(dir, 'pg'))
    const server = new PGLiteSocketServer({ db, port: 0, host: '127.0.0.1', maxConnections: 1 })
    await server.start()
    let closed = false
    return {
      url: `postgres://postgres@${server.getServerConn()}/postgres`,
      dataDir: dir,
      async close () {
        if (closed) return
        closed = true
        await server.stop()
        await db.close()
        unlock()
      }
    }
  } catch (err) {
    unlock()
    throw err
  }
}
