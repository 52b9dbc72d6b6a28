/**
 * Reads a V8 CPU profile (the `.cpuprofile` JSON that `node --cpu-prof` or the inspector's
 * `Profiler.stop` produce) and attributes sampled time to functions and to coarse buckets (meshfetch's own
 * files, undici, Node's streams, timers, abort signals, GC, ...), so a benchmark can say per call what costs
 * what.
 */

/** The parts of a V8 CPU profile we read. */
export interface CpuProfile {
  nodes: Array<{
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
    children?: number[];
  }>;
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Time per key in microseconds. */
export type TimeMap = Map<string, number>;

/** Self and inclusive time per function, and self time per bucket. */
export interface ProfileSummary {
  totalUs: number;
  selfByFunction: TimeMap;
  inclusiveByFunction: TimeMap;
  selfByBucket: TimeMap;
}

function shortUrl(url: string, root: string): string {
  let u = url.startsWith('file://') ? url.slice(7) : url;
  if (u.startsWith(root)) u = u.slice(root.length + 1);
  const nm = u.lastIndexOf('node_modules/');
  if (nm >= 0) u = u.slice(nm + 'node_modules/'.length);
  return u;
}

/** The bucket a frame's self time goes to. */
export function bucketOf(functionName: string, url: string, root: string): string {
  if (functionName.startsWith('(') && url === '') return functionName; // (garbage collector), (program), (idle)
  const u = shortUrl(url, root);
  if (u.startsWith('src/') || u.startsWith('dist/')) return `meshfetch ${u.slice(u.indexOf('/') + 1)}`;
  if (u.startsWith('bench/')) return 'bench harness';
  if (u.startsWith('undici/')) return 'undici (npm)';
  if (u.startsWith('node:internal/deps/undici')) return 'node built-in undici (global fetch)';
  if (u.startsWith('node:internal/streams') || u === 'node:stream') return 'node streams';
  if (u.startsWith('node:internal/webstreams')) return 'node web streams';
  if (u.startsWith('node:internal/abort_controller') || u.startsWith('node:internal/event_target'))
    return 'node AbortSignal / EventTarget';
  if (u.startsWith('node:internal/timers') || u === 'node:timers') return 'node timers';
  if (u.startsWith('node:internal/url') || u === 'node:url') return 'node URL';
  if (u === 'node:net' || u.startsWith('node:internal/stream_base') || u.startsWith('node:internal/net'))
    return 'node net / sockets';
  if (u === 'node:events' || u.startsWith('node:internal/events')) return 'node EventEmitter';
  if (u.startsWith('node:internal/process/task_queues') || u.startsWith('node:internal/async_hooks'))
    return 'node task queues / async hooks';
  if (u.startsWith('node:')) return `node other (${u.slice(5).split('/').slice(0, 2).join('/')})`;
  if (u === '') return `native ${functionName || '(anonymous)'}`;
  return u.split('/')[0] ?? u;
}

/**
 * The key of a frame in the per-function maps: `name file:line` (no line for files on one line, as tsx
 * emits them: its output is minified, so only the function name tells frames of one file apart).
 */
export function frameKey(functionName: string, url: string, line: number, root: string): string {
  const u = shortUrl(url, root);
  return `${functionName || '(anonymous)'} ${u ? (line > 0 ? `${u}:${line + 1}` : u) : ''}`.trim();
}

function add(m: TimeMap, k: string, v: number): void {
  m.set(k, (m.get(k) ?? 0) + v);
}

/** Attributes each sample's time (its time delta) to its frame, its bucket and every distinct caller. */
export function summarizeProfile(p: CpuProfile, root: string): ProfileSummary {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const keyOf = new Map<number, string>();
  for (const n of p.nodes) {
    const f = n.callFrame;
    keyOf.set(n.id, frameKey(f.functionName, f.url, f.lineNumber, root));
  }
  const selfByFunction: TimeMap = new Map();
  const inclusiveByFunction: TimeMap = new Map();
  const selfByBucket: TimeMap = new Map();
  let totalUs = 0;
  const seen = new Set<string>();
  for (let i = 0; i < p.samples.length; i++) {
    // V8 records the delta before sample i; attribute the next delta to this sample (the usual convention).
    const dt = p.timeDeltas[i + 1] ?? 0;
    if (dt <= 0) continue;
    const id = p.samples[i]!;
    const n = byId.get(id);
    if (!n) continue;
    totalUs += dt;
    add(selfByFunction, keyOf.get(id)!, dt);
    add(selfByBucket, bucketOf(n.callFrame.functionName, n.callFrame.url, root), dt);
    seen.clear();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = keyOf.get(cur)!;
      if (seen.has(k)) continue;
      seen.add(k);
      add(inclusiveByFunction, k, dt);
    }
  }
  return { totalUs, selfByFunction, inclusiveByFunction, selfByBucket };
}

/** The `n` largest entries of a map. */
export function top(m: TimeMap, n: number, filter?: (k: string) => boolean): Array<[string, number]> {
  return [...m.entries()]
    .filter(([k]) => !filter || filter(k))
    .sort((a, b) => b[1] - a[1])
    .slice(0, n);
}
