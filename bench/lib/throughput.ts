// Throughput of a micro-benchmark pass, charged by CPU time.
//
// This machine's cores are shared: a contender's rate is its bytes over the CPU time of this thread (what it costs),
// not over wall time, which would also count the slices other processes took. Wall time only bounds each sample.

const threadMs = (): number => {
  const { user, system } = process.threadCpuUsage();
  return (user + system) / 1000;
};

/** MB/s of `pass` (which handles `bytes` bytes each time) repeated for about `budgetMs` of wall time. */
export function measureMbPerSec(
  pass: () => number,
  bytes: number,
  budgetMs: number,
): { mbPerSec: number; sink: number } {
  let passes = 0;
  let sink = 0;
  const wallStart = performance.now();
  const cpuStart = threadMs();
  do {
    sink += pass();
    passes++;
  } while (performance.now() - wallStart < budgetMs);
  const cpuMs = Math.max(threadMs() - cpuStart, 1e-3);
  return { mbPerSec: (bytes * passes) / 1e6 / (cpuMs / 1e3), sink };
}
