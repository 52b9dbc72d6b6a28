/**
 * The CPU cost of the mesh's own code per call, with no network: the pool leaf is replaced by a module that
 * answers at once with a 200 and a small body (a fresh Readable per call), so what is measured is the
 * stack (entry point, modules, router, balancer, body-done hooks) and nothing of undici or the kernel.
 * The overhead benchmark measures the whole call on loopback; this one isolates the part the mesh adds, with
 * far less noise, so a hot-path change can be judged in a minute.
 *
 * Each variant runs in its own process (one mesh per process, as in bench/overhead: several stacks in one
 * process make the call sites megamorphic and slow all of them), in passes that alternate the variants; the
 * figure is the median over passes of process CPU per call.
 *
 * Run:
 *   npm run build && npx tsx bench/overhead/stack-cost.ts [--concurrency 64] [--calls 200000]
 *     [--passes 5] [--variants bal,full,-deadline,...] [--entry request|dispatcher]
 * A variant is `floor` (the fake leaf alone, no mesh), `bal` (no module), `full` (the default stacks) or `-ROLE` (the default stacks without ROLE).
 * `--entry dispatcher` makes each call through the built-in fetch with `mesh.dispatcher` (the body read with
 * `arrayBuffer()`) instead of `mesh.request`; `floor` stays the fake leaf alone.
 */
import { fork } from 'node:child_process';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { createMesh, type MeshResponse, type StackModule, type Stacks } from 'meshfetch';
import { defaultStacks, type Stack } from 'meshfetch/extend';
import { listFlag, numberFlag, parseFlags } from '../lib/cli.js';
import { median } from '../lib/stats.js';
import { markdownTable, num } from '../lib/table.js';

const SERVICE = 'backend';
const PAYLOAD = Buffer.from('{"ok":true,"pad":"0123456789ab"}');

/** The pool leaf's stand-in: a 200 with a 32-byte body, answered in the same turn. */
const fakeLeaf: StackModule = {
  role: 'fake-leaf',
  description: 'answers at once, without the network',
  make() {
    return {
      status: 'ready',
      call(): Promise<MeshResponse> {
        const body = new Readable({ read() {} });
        body.push(PAYLOAD);
        body.push(null);
        // As the pool leaf's body says once the whole body has arrived (src/transport/body.ts).
        (body as Readable & { complete?: boolean }).complete = true;
        const res: MeshResponse = {
          statusCode: 200,
          statusText: 'OK',
          rawHeaders: ['content-type', 'application/json', 'content-length', '32'],
          headers: { 'content-type': 'application/json', 'content-length': '32' },
          body,
        };
        return Promise.resolve(res);
      },
      close: () => Promise.resolve(),
    };
  },
};

function strip(s: Stack): Stack {
  return s.roles().reduce((acc, role) => acc.remove(role), s);
}

function stacksFor(variant: string): (s: Stacks) => Stacks {
  return (s) => {
    let out: Stacks;
    if (variant === 'bal')
      out = { logical: strip(s.logical), concrete: strip(s.concrete), endpoint: strip(s.endpoint) };
    else if (variant === 'full') out = s;
    else if (variant.startsWith('-')) {
      const role = variant.slice(1);
      const rm = (st: Stack): Stack => (st.roles().includes(role) ? st.remove(role) : st);
      out = { logical: rm(s.logical), concrete: rm(s.concrete), endpoint: rm(s.endpoint) };
    } else throw new Error(`unknown variant ${variant}`);
    return { ...out, endpoint: out.endpoint.append(fakeLeaf) };
  };
}

function drain(body: Readable): Promise<void> {
  return new Promise((resolve, reject) => {
    body.on('error', reject);
    body.on('end', resolve);
    body.resume();
  });
}

async function child(variant: string, concurrency: number, calls: number, entry: string): Promise<void> {
  // `floor`: the fake leaf called directly, no mesh: what the leaf and the body cost by themselves.
  const mesh =
    variant === 'floor'
      ? undefined
      : createMesh({
          services: { [SERVICE]: { endpoints: ['127.0.0.1:9'] } },
          stack: stacksFor(variant),
        });
  const leaf = fakeLeaf.make(undefined as never, undefined as never);
  const url = `http://${SERVICE}/`;
  // npm undici's Dispatcher type is not the one the global fetch's types name (undici-types).
  const init = { dispatcher: mesh?.dispatcher } as unknown as RequestInit;
  const call = (): Promise<{ statusCode: number; body: Readable }> =>
    mesh === undefined ? leaf.call(undefined as never, undefined as never) : mesh.request(url);
  const viaFetch = async (): Promise<number> => {
    const r = await fetch(url, init);
    await r.arrayBuffer();
    return r.status;
  };
  const run = async (n: number): Promise<void> => {
    let left = n;
    const worker = async (): Promise<void> => {
      while (left-- > 0) {
        if (entry === 'dispatcher' && mesh !== undefined) {
          const status = await viaFetch();
          if (status !== 200) throw new Error(`status ${status}`);
          continue;
        }
        const r = await call();
        if (r.statusCode !== 200) throw new Error(`status ${r.statusCode}`);
        await drain(r.body);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  };
  await run(Math.min(calls, 50_000)); // warm-up: JIT, pools
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await run(calls);
  const cpu = process.cpuUsage(c0);
  const wallNs = Number(process.hrtime.bigint() - t0);
  process.send!({ variant, cpuUs: (cpu.user + cpu.system) / calls, wallUs: wallNs / 1e3 / calls });
  await mesh?.close({ gracePeriodMs: 100 });
}

function runChild(
  variant: string,
  concurrency: number,
  calls: number,
  entry: string,
): Promise<{ cpuUs: number; wallUs: number }> {
  return new Promise((resolve, reject) => {
    const p = fork(
      fileURLToPath(import.meta.url),
      ['--child', variant, '--concurrency', String(concurrency), '--calls', String(calls), '--entry', entry],
      {
        execArgv: ['--import', 'tsx'],
      },
    );
    let got: { cpuUs: number; wallUs: number } | undefined;
    p.on('message', (m) => (got = m as { cpuUs: number; wallUs: number }));
    p.on('error', reject);
    p.on('exit', (code) => (got ? resolve(got) : reject(new Error(`${variant}: child exited ${code}`))));
  });
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const concurrency = numberFlag(flags, 'concurrency', 64);
  const calls = numberFlag(flags, 'calls', 200_000);
  const entry = typeof flags.entry === 'string' ? flags.entry : 'request';
  if (entry !== 'request' && entry !== 'dispatcher') throw new Error(`unknown entry ${entry}`);
  if (typeof flags.child === 'string') return child(flags.child, concurrency, calls, entry);
  const passes = numberFlag(flags, 'passes', 5);
  const roles = [
    ...defaultStacks().logical.roles(),
    ...defaultStacks().concrete.roles(),
    ...defaultStacks().endpoint.roles(),
  ];
  const variants = listFlag(flags, 'variants') ?? ['floor', 'bal', 'full', ...roles.map((r) => `-${r}`)];
  const cpu = new Map<string, number[]>(variants.map((v) => [v, []]));
  for (let p = 0; p < passes; p++) {
    for (const v of variants) {
      const r = await runChild(v, concurrency, calls, entry);
      cpu.get(v)!.push(r.cpuUs);
      process.stderr.write(`pass ${p + 1} ${v}: ${r.cpuUs.toFixed(2)} µs/call\n`);
    }
  }
  const bal = median(cpu.get('bal') ?? [NaN]);
  const full = median(cpu.get('full') ?? [NaN]);
  const rows = variants.map((v) => {
    const m = median(cpu.get(v)!);
    return [v, num(m, 2), num(m - bal, 2), v.startsWith('-') ? num(full - m, 2) : ''];
  });
  console.log(
    markdownTable(['variant', 'CPU µs/call', 'over bal', 'saved vs full'], rows, ['l', 'r', 'r', 'r']),
  );
}

await main();
