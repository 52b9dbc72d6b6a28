// The test harness itself: a clear error when no binary is found, and an agent whose process is really gone
// after stop() and kill(), whose restart() keeps the ports and starts from an empty state.
import { afterEach, describe, expect, it } from 'vitest';
import { findConsulBinary, registerInstance, startConsul } from '../support/consul.js';

const saved = process.env.CONSUL_BIN;
afterEach(() => {
  if (saved === undefined) delete process.env.CONSUL_BIN;
  else process.env.CONSUL_BIN = saved;
});

const alive = (pid: number | undefined): boolean => {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('consul test harness', () => {
  it('a CONSUL_BIN that does not run is a clear error naming the fixes', () => {
    process.env.CONSUL_BIN = '/nonexistent/consul';
    expect(() => findConsulBinary()).toThrow(
      /CONSUL_BIN=\/nonexistent\/consul does not run.*npm run consul:install/,
    );
  });

  it('restart() keeps the ports with a fresh state; stop() and kill() leave no process', async () => {
    const agent = await startConsul();
    try {
      const pid = agent.pid;
      await registerInstance(agent, { name: 'h', id: 'h-1', address: '127.0.0.1', port: 1 });
      await agent.restart();
      expect(agent.pid).not.toBe(pid);
      expect(alive(pid)).toBe(false);
      const services = await agent.api<Record<string, unknown>>('GET', '/v1/catalog/services');
      expect(Object.keys(services)).toEqual(['consul']);
      const pid2 = agent.pid;
      await agent.kill();
      expect(agent.running).toBe(false);
      expect(alive(pid2)).toBe(false);
      await agent.restart();
      expect(agent.running).toBe(true);
    } finally {
      const pid = agent.pid;
      await agent.stop();
      expect(alive(pid)).toBe(false);
    }
  });
});
