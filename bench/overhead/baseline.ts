/**
 * `--baseline DIR`: the same overhead run measures some clients a second time on another build of meshfetch
 * (another checkout with its own `dist/` and `node_modules/`, typically the commit before a change), in the
 * same rounds and groups as their current selves, so a change is judged as current / baseline ratios paired
 * round by round (issues 19 and 22: "each >= 0.95x (0.97x) their previous-commit selves at c=64").
 *
 * A baseline client's process loads `createMesh` from DIR/dist/index.js and nothing of the current build: the
 * import resolves `undici` and every other dependency from DIR/node_modules, so it runs on that checkout's
 * own undici. The current build is not loaded in that process (and a baseline is not loaded in the current
 * clients'), so the two copies share no module state (undici's global dispatcher, for one).
 *
 * The client code here speaks the configuration API that has not changed from 98b48a9 to this commit:
 * `createMesh({ services: { name: { endpoints } }, stack: (defaults) => stacks })`, stacks of three levels
 * whose `Stack` has `roles()` and `remove(role)`. A baseline with another shape fails at start with a message.
 *
 * No import of the current meshfetch, undici or OpenTelemetry here: client-worker.ts imports this file alone
 * for a baseline client.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Client, Upstreams } from './variants.js';

/** A baseline client's id is its current self's id with this prefix. */
export const BASELINE_PREFIX = 'base:';

/** The environment variable that carries DIR from index.ts to the client processes. */
export const BASELINE_ENV = 'MESHFETCH_BENCH_BASELINE';

/** variants.ts's SERVICE (not imported: that would load the current build into a baseline client). */
const SERVICE = 'backend';

/** The clients that `--baseline` measures on both builds, with what their baseline client does. */
const BASELINE_CLIENTS: Readonly<
  Record<string, { entry: 'request' | 'fetch' | 'dispatcher'; stack: 'full' | 'balancer-only' }>
> = {
  'mesh-request-bal': { entry: 'request', stack: 'balancer-only' },
  'mesh-request-full': { entry: 'request', stack: 'full' },
  'mesh-fetch-full': { entry: 'fetch', stack: 'full' },
  'dispatcher-full': { entry: 'dispatcher', stack: 'full' },
};

/** The ids of the current clients that get a baseline twin. */
export const BASELINE_OF: readonly string[] = Object.keys(BASELINE_CLIENTS);

/** The baseline twin's id of a current client. */
export function baselineId(id: string): string {
  return BASELINE_PREFIX + id;
}

/** What the report says about the baseline build. */
export interface BaselineInfo {
  /** The checkout, as an absolute path. */
  dir: string;
  /** Its `git rev-parse --short HEAD`, or 'unknown' outside git. */
  commit: string;
  /** True when its work tree has uncommitted changes under src/. */
  srcDirty: boolean;
  /** The undici its `node_modules` holds (the one its mesh runs on). */
  undici: string;
  /** The threshold the current / baseline req/s ratios are judged against (--baseline-min). */
  min: number;
}

function git(dir: string, args: string[]): string | undefined {
  try {
    return execFileSync('git', ['-C', dir, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trimEnd();
  } catch {
    return undefined;
  }
}

/**
 * Checks that DIR is a built checkout with its dependencies installed and describes it; throws with the steps
 * to make one otherwise. Warns when a file under DIR/src is newer than DIR/dist/index.js (a stale build).
 */
export function inspectBaseline(dirArg: string, min: number): BaselineInfo {
  const dir = path.resolve(dirArg);
  const entry = path.join(dir, 'dist', 'index.js');
  const undiciPkg = path.join(dir, 'node_modules', 'undici', 'package.json');
  const how =
    'make one with: git worktree add /tmp/base <commit> && cd /tmp/base && npm ci && npm run build ' +
    '(docs/benchmarks.md, "Against another build")';
  if (!existsSync(entry)) throw new Error(`--baseline ${dirArg}: no ${entry}; ${how}`);
  if (!existsSync(undiciPkg)) throw new Error(`--baseline ${dirArg}: no node_modules/undici in it; ${how}`);
  const undici = (JSON.parse(readFileSync(undiciPkg, 'utf8')) as { version: string }).version;
  const changed = git(dir, ['status', '--porcelain', '--', 'src']);
  const newestSrc = git(dir, ['ls-files', 'src'])
    ?.split('\n')
    .filter((f) => f.length > 0)
    .reduce((m, f) => {
      try {
        return Math.max(m, statSync(path.join(dir, f)).mtimeMs);
      } catch {
        return m;
      }
    }, 0);
  if (newestSrc !== undefined && newestSrc > statSync(entry).mtimeMs)
    console.log(`baseline: warning: ${dir}/src has files newer than dist/index.js; run npm run build there`);
  return {
    dir,
    commit: git(dir, ['rev-parse', '--short', 'HEAD']) ?? 'unknown',
    srcDirty: changed !== undefined && changed.length > 0,
    undici,
    min,
  };
}

/** The parts of the baseline's public API the clients use, typed structurally (any version that has them). */
interface BaseStack {
  roles(): string[];
  remove(role: string): BaseStack;
}
interface BaseStacks {
  logical: BaseStack;
  concrete: BaseStack;
  endpoint: BaseStack;
}
interface BaseMesh {
  request(url: string): Promise<{ statusCode: number; body: { text(): Promise<string> } }>;
  fetch(url: string): Promise<Response>;
  dispatcher: unknown;
  close(opts: { gracePeriodMs: number }): Promise<void>;
}
interface BaseModule {
  createMesh(config: {
    services: Record<string, { endpoints: string[] }>;
    stack?: (s: BaseStacks) => BaseStacks;
  }): BaseMesh;
}

function check(status: number): void {
  if (status !== 200) throw new Error(`unexpected status ${status}`);
}

/** Removes every module of a stack (the baseline's `Stack`): what variants.ts's balancerOnly does. */
function strip(s: BaseStack): BaseStack {
  return s.roles().reduce((acc, role) => acc.remove(role), s);
}

/**
 * The baseline client of `id` (a current client's id, without the prefix), built on DIR/dist: the same calls
 * as variants.ts's makeClient for that client.
 */
export async function baselineClient(id: string, dir: string | undefined, up: Upstreams): Promise<Client> {
  const spec = BASELINE_CLIENTS[id];
  if (spec === undefined) throw new Error(`no baseline client for ${id}`);
  if (dir === undefined || dir === '') throw new Error(`${BASELINE_ENV} is not set`);
  const mod = (await import(pathToFileURL(path.join(dir, 'dist', 'index.js')).href)) as Partial<BaseModule>;
  if (typeof mod.createMesh !== 'function') throw new Error(`${dir}/dist/index.js exports no createMesh`);
  const stack =
    spec.stack === 'balancer-only'
      ? (s: BaseStacks): BaseStacks => {
          if (typeof s?.logical?.roles !== 'function')
            throw new Error(
              `the baseline's stacks have no roles()/remove(): adapt bench/overhead/baseline.ts`,
            );
          return { logical: strip(s.logical), concrete: strip(s.concrete), endpoint: strip(s.endpoint) };
        }
      : undefined;
  const mesh = mod.createMesh({
    services: { [SERVICE]: { endpoints: [`127.0.0.1:${up.serverPort}`] } },
    ...(stack ? { stack } : {}),
  });
  const url = `http://${SERVICE}/`;
  const close = (): Promise<void> => mesh.close({ gracePeriodMs: 1_000 });
  switch (spec.entry) {
    case 'request':
      return {
        async call() {
          const r = await mesh.request(url);
          check(r.statusCode);
          await r.body.text();
        },
        close,
      };
    case 'fetch':
      return {
        async call() {
          const r = await mesh.fetch(url);
          check(r.status);
          await r.text();
        },
        close,
      };
    case 'dispatcher':
      return {
        async call() {
          // Node's built-in fetch with the baseline's dispatcher, as the current client does with its own.
          const r = await fetch(url, { dispatcher: mesh.dispatcher } as RequestInit);
          check(r.status);
          await r.text();
        },
        close,
      };
  }
}
