// What modules expose to mesh.snapshot(): each module registers its section when its stack is built, into the
// sink of that stack (logical service, concrete destination, endpoint); the snapshot reads the sections back and
// nothing looks a module up by class.
import { afterEach, describe, expect, it } from 'vitest';
import { createMesh, type Mesh, type ModuleEnv, type StackModule } from 'meshfetch';
import { Params, silentLogger, Stack } from 'meshfetch/extend';
import { FakeClock, mockService, seededRng } from 'meshfetch/testing';
import { defineSection } from '../../src/core/stack.js';
import { retryModule, RetryParam, RETRY_DEFAULTS } from '../../src/resilience/retry.js';
import { admissionModule } from '../../src/resilience/admission.js';
import {
  AdmissionSection,
  RetryBudgetSection,
  serviceSections,
  SnapshotSections,
} from '../../src/telemetry/snapshot.js';
import { targetOf } from '../support/targets.js';

function env(sections: SnapshotSections | undefined, params = Params.empty): ModuleEnv<'logical'> {
  return {
    level: 'logical',
    target: { service: 'svc' },
    params,
    clock: new FakeClock(),
    rng: seededRng(1),
    logger: silentLogger,
    sections,
  };
}

describe('SnapshotSections', () => {
  it('reads a registered section each time, and undefined for one nobody registered', () => {
    const sections = new SnapshotSections();
    const Count = defineSection<number>('count');
    let n = 1;
    sections.expose(Count, () => n);
    expect(sections.read(Count)).toBe(1);
    n = 2;
    expect(sections.read(Count)).toBe(2);
    expect(sections.read(defineSection<number>('count'))).toBeUndefined(); // same name, another section
  });

  it('the module further out (made later) is the one read when two register the same section', () => {
    const sections = new SnapshotSections();
    const Name = defineSection<string>('name');
    const naming = (role: string): StackModule => ({
      role,
      description: role,
      make: (next, e) => {
        e.sections?.expose(Name, () => role);
        return next;
      },
    });
    Stack.of('logical', [naming('outer'), naming('inner')]).build(mockService().service, env(sections));
    expect(sections.read(Name)).toBe('outer');
  });

  it('a module registers when it is made, and not when it is off', () => {
    const on = new SnapshotSections();
    Stack.of('logical', [retryModule]).build(
      mockService().service,
      env(on, Params.empty.with(RetryParam, RETRY_DEFAULTS)),
    );
    expect(on.read(RetryBudgetSection)).toBe(100); // 10/s x 10 s, nothing deposited yet
    const off = new SnapshotSections();
    Stack.of('logical', [retryModule]).build(
      mockService().service,
      env(off, Params.empty.with(RetryParam, false)),
    );
    expect(off.read(RetryBudgetSection)).toBeUndefined();
    expect(serviceSections(off, new SnapshotSections())).toEqual({
      retryBudget: null,
      backupRequests: null,
      breaker: null,
      admission: null,
    });
  });

  it('a stack built without a sink builds as before', () => {
    const { service } = mockService();
    const built = Stack.of('logical', [retryModule]).build(service, env(undefined));
    expect(built).not.toBe(service);
  });

  it('a concrete module registers into the concrete stack it is made for', () => {
    const sections = new SnapshotSections();
    Stack.of('concrete', [admissionModule]).build(mockService().service, {
      ...env(sections),
      level: 'concrete',
      target: targetOf('concrete', 'svc'),
    });
    expect(sections.read(AdmissionSection)).toEqual({ inFlight: 0, limit: 1024, rejected: 0 });
  });
});

describe('mesh.snapshot() from registered sections', () => {
  let mesh: Mesh | undefined;
  afterEach(async () => {
    await mesh?.close({ gracePeriodMs: 0 });
    mesh = undefined;
  });

  it('shows a module wherever the user placed it in its stack, and null once it is removed', () => {
    mesh = createMesh({
      services: { users: { endpoints: ['127.0.0.1:1'] } },
      stack: (d) => ({
        logical: d.logical.remove('retries').append(retryModule),
        concrete: d.concrete.remove('admission'),
        endpoint: d.endpoint.remove('failure-accrual'),
      }),
    });
    const svc = mesh.snapshot().services[0]!;
    expect(svc.retryBudget).toBe(100);
    expect(svc.admission).toBeNull();
    expect(svc.breaker).toBe('closed');
    expect(svc.endpoints[0]!.accrual).toBeUndefined();
  });

  it('reads each concrete destination and each endpoint from its own stack', () => {
    mesh = createMesh({
      services: {
        users: {
          destinations: { v1: { endpoints: ['127.0.0.1:1'] }, v2: { endpoints: ['127.0.0.1:2'] } },
          routes: [
            {
              to: [
                { destination: 'v1', weight: 1 },
                { destination: 'v2', weight: 1 },
              ],
            },
          ],
          circuitBreaker: { volumeThreshold: 1 },
        },
      },
    });
    const svc = mesh.snapshot().services[0]!;
    expect(svc.routing!.destinations.map((d) => [d.name, d.breaker])).toEqual([
      ['v1', 'closed'],
      ['v2', 'closed'],
    ]);
    expect(svc.endpoints).toHaveLength(1);
    expect(svc.endpoints[0]!.accrual).toEqual({ state: 'ready', successRate: null, consecutiveFailures: 0 });
  });
});
