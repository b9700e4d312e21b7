import bcrypt from 'bcrypt'
import t from 'tap'
import { createBcryptPool, type Requester } from '../../src/auth/bcrypt-pool.js'

// The pool's background lane (issue 23: memo refreshes). Every admission
// decision is taken when compare() is called, so calls made in one turn line
// up deterministically; a cost-4 hash keeps the real compares short.
const SECRET = 'hg_pat_' + '0123456789abcdef'.repeat(3)
const HASH = bcrypt.hashSync(SECRET, 4)

const background = (): Requester => ({ destroyed: false, background: true })

function codeOf (p: Promise<unknown>): Promise<string | null> {
  return p.then(() => null, (err: unknown) => String((err as { code?: unknown }).code))
}

t.test('background compares never cause a request\'s compare to be refused', async t => {
  const pool = createBcryptPool({ concurrency: 1, queueSize: 1 })
  const bg = pool.compare(SECRET, HASH, background())
  t.equal(pool.active, 1, 'an idle pool runs background work at once')
  const a = pool.compare(SECRET, HASH)
  const b = pool.compare(SECRET, HASH)
  t.equal(pool.queued, 2, 'the request queue grows by the slot the background work holds')
  const c = codeOf(pool.compare(SECRET, HASH))
  t.equal(await c, 'HG_ERR_AUTH_BUSY', 'beyond that, refused exactly as without background work')
  t.same(await Promise.all([bg, a, b]), [true, true, true])
  t.equal(pool.rejections, 1)
  t.equal(pool.active, 0)
})

t.test('a full background lane drops background work and leaves the request queue alone', async t => {
  const pool = createBcryptPool({ concurrency: 1, queueSize: 1, backgroundQueueSize: 2 })
  const running = pool.compare(SECRET, HASH)
  const queuedBg = [pool.compare(SECRET, HASH, background()), pool.compare(SECRET, HASH, background())]
  t.equal(pool.backgroundQueued, 2)
  t.equal(pool.backgroundAvailable, false)
  t.equal(await codeOf(pool.compare(SECRET, HASH, background())), 'HG_ERR_AUTH_BUSY', 'dropped')
  t.equal(pool.backgroundDropped, 1)
  const request = pool.compare(SECRET, HASH)
  t.equal(pool.queued, 1, 'a request still gets its place in the queue')
  t.same(await Promise.all([running, request, ...queuedBg]), [true, true, true, true])
  t.equal(pool.rejections, 0, 'a dropped refresh is no 503')
  t.equal(pool.compares, 4)
})

t.test('background work runs only when no request waits', async t => {
  const pool = createBcryptPool({ concurrency: 1, queueSize: 4 })
  const order: string[] = []
  const track = (name: string, p: Promise<boolean>): Promise<void> => p.then(() => { order.push(name) })
  await Promise.all([
    track('request 1', pool.compare(SECRET, HASH)),
    track('refresh', pool.compare(SECRET, HASH, background())),
    track('request 2', pool.compare(SECRET, HASH)),
    track('request 3', pool.compare(SECRET, HASH))
  ])
  t.same(order, ['request 1', 'request 2', 'request 3', 'refresh'])
})

t.test('promote moves queued background work to the end of the request queue', async t => {
  const pool = createBcryptPool({ concurrency: 1, queueSize: 4 })
  const order: string[] = []
  const track = (name: string, p: Promise<boolean>): Promise<void> => p.then(() => { order.push(name) })
  const refresh = { destroyed: false, background: true }
  const done = [
    track('request 1', pool.compare(SECRET, HASH)),
    track('refresh', pool.compare(SECRET, HASH, refresh)),
    track('request 2', pool.compare(SECRET, HASH))
  ]
  refresh.background = false
  pool.promote(refresh)
  t.equal(pool.backgroundQueued, 0)
  t.equal(pool.queued, 2)
  done.push(track('request 3', pool.compare(SECRET, HASH)))
  await Promise.all(done)
  t.same(order, ['request 1', 'request 2', 'refresh', 'request 3'])
  pool.promote(refresh)
  t.pass('promoting work no longer queued is a no-op')
})

t.test('background work uses at most half the slots, requests still all of them', async t => {
  const pool = createBcryptPool({ concurrency: 4, queueSize: 4 })
  t.equal(pool.backgroundConcurrency, 2)
  const bg = Array.from({ length: 4 }, () => pool.compare(SECRET, HASH, background()))
  t.equal(pool.active, 2, 'two slots left idle for requests')
  t.equal(pool.backgroundQueued, 2)
  const requests = [pool.compare(SECRET, HASH), pool.compare(SECRET, HASH)]
  t.equal(pool.active, 4, 'requests take the idle slots at once')
  t.equal(pool.queued, 0)
  t.same(await Promise.all([...bg, ...requests]), Array(6).fill(true))
  t.equal(pool.active, 0)
  t.equal(createBcryptPool({ concurrency: 1, queueSize: 1 }).backgroundConcurrency, 1, 'one slot: background work may use it')
})

t.test('a waiting request is never handed a slot its client left, background work still runs after it', async t => {
  const pool = createBcryptPool({ concurrency: 1, queueSize: 4 })
  const client = { destroyed: false }
  const running = pool.compare(SECRET, HASH)
  const gone = codeOf(pool.compare(SECRET, HASH, client))
  const bg = pool.compare(SECRET, HASH, background())
  client.destroyed = true
  t.same(await Promise.all([running, gone, bg]), [true, 'HG_ERR_CLIENT_GONE', true])
  t.equal(pool.abandoned, 1)
  t.equal(pool.compares, 2)
  t.equal(pool.active, 0)
})
