/**
 * The parent's side of client-worker.ts: starts one variant's client in a process of its own and drives it
 * over IPC. Used by index.ts (the whole run) and idle.ts (the idle-gap experiment).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { RunResult, WorkerCommand } from './client-worker.js';
import { childExecArgv } from './variants.js';

/** A variant's client running in its own process (client-worker.ts). */
export interface WorkerClient {
  /** Runs a closed loop; with `record`, the result carries every latency. */
  run(concurrency: number, durationMs: number, record: boolean): Promise<RunResult>;
  /** Closes the client and waits for the process to exit (killed after 10 s). */
  close(): Promise<void>;
  /** The client process's pid. */
  readonly pid: number | undefined;
}

/**
 * Starts `id`'s client and resolves once it has made one call. `nodeFlags` are added to the child's
 * `execArgv` (V8 experiments: `--trace-deopt`, `--no-memory-reducer`).
 */
export function startWorker(
  id: string,
  serverPort: number,
  haproxyPort: number | undefined,
  nodeFlags: readonly string[] = [],
): Promise<WorkerClient> {
  const file = fileURLToPath(new URL('./client-worker.ts', import.meta.url));
  const child: ChildProcess = fork(file, [id, String(serverPort), haproxyPort ? String(haproxyPort) : ''], {
    execArgv: [...childExecArgv(), ...nodeFlags],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let waiting: ((m: unknown) => void) | undefined;
  let failed: ((err: Error) => void) | undefined;
  child.on('message', (m) => {
    const w = waiting;
    waiting = undefined;
    w?.(m);
  });
  child.once('exit', (code) => failed?.(new Error(`overhead client ${id} exited (code ${code})`)));
  const ask = <T>(cmd: WorkerCommand | undefined): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      waiting = resolve as (m: unknown) => void;
      failed = reject;
      if (cmd) child.send(cmd);
    });
  return ask<{ type: 'ready' }>(undefined).then(() => ({
    pid: child.pid,
    run: (concurrency, durationMs, record) =>
      ask<RunResult>({ type: 'run', concurrency, durationMs, record }),
    close: () =>
      new Promise<void>((resolve) => {
        failed = undefined;
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.send({ type: 'close' });
        setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
      }),
  }));
}
