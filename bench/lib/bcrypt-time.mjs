// One bcrypt compare, timed in this process (the bcrypt-alone row and the
// memo-expiry section's cost reason both report it).
import { median } from './stats.mjs'

/**
 * Hashes `secret` at `cost` and times `n` compares against it, one at a time:
 * the hash and the median ms. `bcrypt` is passed in, since the server process
 * loads it only in its bcrypt mode.
 */
export async function timeCompare (bcrypt, secret, cost, n) {
  const hash = await bcrypt.hash(secret, cost)
  const times = []
  for (let i = 0; i < n; i++) {
    const t0 = performance.now()
    await bcrypt.compare(secret, hash)
    times.push(performance.now() - t0)
  }
  return { hash, ms: median(times) }
}
