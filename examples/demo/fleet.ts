/**
 * The parent's handle on the backends child process (backends.ts): forks it with the same loader flags as
 * this process (tsx and the `meshfetch-source` condition), waits for its ports, starts runs and stops it.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BACKENDS, type BackendSpec, type Counts, type FromBackends, type ToBackends } from './scenario.js';

/** One backend as the parent knows it. */
export interface BackendInfo {
  readonly spec: BackendSpec;
  readonly host: string;
  readonly port: number;
  /** `host:port`, as the mesh names the endpoint. */
  readonly address: string;
}

/** The running backends. */
export class Fleet {
  private constructor(
    private readonly child: ChildProcess,
    readonly backends: readonly BackendInfo[],
  ) {}

  /** Forks the child and resolves once every server listens (rejects if it does not within 10 s). */
  static async start(): Promise<Fleet> {
    const child = fork(fileURLToPath(new URL('./backends.ts', import.meta.url)), [], {
      execArgv: process.execArgv,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const ports = await new Promise<Record<string, number>>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill();
        reject(new Error('the backends did not start within 10 s'));
      }, 10_000);
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`the backends process exited early (code ${code})`)));
      child.on('message', (msg: FromBackends) => {
        if (msg.type === 'ready') {
          clearTimeout(timer);
          resolve(msg.ports);
        }
      });
    });
    child.removeAllListeners('exit');
    const backends = BACKENDS.map((spec) => {
      const port = ports[spec.name]!;
      return { spec, host: '127.0.0.1', port, address: `127.0.0.1:${port}` };
    });
    return new Fleet(child, backends);
  }

  /** Starts a run: reseeds the backends and restarts their schedule; resolves when they have done so. */
  run(seed: number, slowAtMs: number | null): Promise<void> {
    return new Promise<void>((resolve) => {
      const onMessage = (msg: FromBackends): void => {
        if (msg.type !== 'running') return;
        this.child.off('message', onMessage);
        resolve();
      };
      this.child.on('message', onMessage);
      this.send({ type: 'run', seed, slowAtMs });
    });
  }

  /** What each backend received since the run started, by backend name. */
  stats(): Promise<Record<string, Counts>> {
    return new Promise((resolve) => {
      if (!this.child.connected) return resolve({});
      const onMessage = (msg: FromBackends): void => {
        if (msg.type !== 'stats') return;
        this.child.off('message', onMessage);
        resolve(msg.counts);
      };
      this.child.on('message', onMessage);
      this.send({ type: 'stats' });
    });
  }

  /** Closes the servers and waits for the child to exit (kills it after 5 s). */
  async stop(): Promise<void> {
    const child = this.child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    this.send({ type: 'stop' });
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }

  private send(msg: ToBackends): void {
    if (this.child.connected) this.child.send(msg);
  }
}
