import { availableParallelism } from 'node:os'
import t from 'tap'
import threadpool from '../src/threadpool.cjs'

const fs = (files: Record<string, string>) => (file: string): string | null => files[file] ?? null

t.test('cgroup v2: cpu.max of the process\'s cgroup and its ancestors, the lowest wins', async t => {
  t.equal(threadpool.cgroupCpuLimit(fs({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': 'max 100000\n' })), null, 'unlimited')
  t.equal(threadpool.cgroupCpuLimit(fs({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '150000 100000\n' })), 1.5, 'a container: its own cgroup at the mount root')
  t.equal(threadpool.cgroupCpuLimit(fs({
    '/proc/self/cgroup': '0::/kubepods/pod1/c1\n',
    '/sys/fs/cgroup/kubepods/pod1/c1/cpu.max': '400000 100000',
    '/sys/fs/cgroup/kubepods/pod1/cpu.max': '200000 100000',
    '/sys/fs/cgroup/kubepods/cpu.max': 'max 100000'
  })), 2, 'a parent\'s lower limit applies')
  t.equal(threadpool.cgroupCpuLimit(fs({ '/proc/self/cgroup': '0::/not/mounted/here\n', '/sys/fs/cgroup/cpu.max': '50000 100000' })), 0.5, 'a host path that is not mounted: the mount root')
  t.equal(threadpool.cgroupCpuLimit(fs({})), null, 'nothing readable (not Linux)')
  t.equal(threadpool.cgroupCpuLimit(fs({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': 'garbage' })), null)
})

t.test('cgroup v1: cfs quota over period; -1 is unlimited', async t => {
  const self = '4:memory:/x\n3:cpu,cpuacct:/\n0::/\n'
  t.equal(threadpool.cgroupCpuLimit(fs({ '/proc/self/cgroup': self, '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' })), null)
  t.equal(threadpool.cgroupCpuLimit(fs({ '/proc/self/cgroup': self, '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '250000', '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000' })), 2.5)
})

t.test('availableCpus: the cores, or the limit rounded up when lower; at least one', async t => {
  const limited = (max: string) => fs({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': max })
  t.equal(threadpool.availableCpus(limited('max 100000'), 8), 8)
  t.equal(threadpool.availableCpus(limited('150000 100000'), 8), 2, '1.5 CPUs: two compares at once, each at most 75% of a core')
  t.equal(threadpool.availableCpus(limited('10000 100000'), 8), 1, '100m: one')
  t.equal(threadpool.availableCpus(limited('1600000 100000'), 8), 8, 'a limit above the cores: the cores')
  t.ok(threadpool.availableCpus() >= 1 && threadpool.availableCpus() <= availableParallelism(), 'this machine')
})
