// The redirect chain's deadline as the dispatcher carries it from hop to hop (src/client/dispatcher-hops.ts),
// on explicit clock readings: a next hop inherits what remains, and a next hop that arrives after the chain's
// deadline has passed is still that chain's (it fails at once) rather than a new call with a fresh budget.
import { describe, expect, it } from 'vitest';
import { HopDeadlines } from '../../src/client/dispatcher-hops.js';

const FROM = 'http://svc/loop';

describe('HopDeadlines', () => {
  it("a redirect's next hop carries the chain's deadline and forwards what remains", () => {
    const hops = new HopDeadlines();
    const headers: Record<string, unknown> = { 'mesh-deadline-ms': '1000' };
    const at = hops.carry(FROM, headers, '1000', 0)!;
    expect(at).toBe(1_000);
    hops.redirected(FROM, '/loop', '1000', at, 300);
    const next: Record<string, unknown> = { 'mesh-deadline-ms': '1000' };
    expect(hops.carry(FROM, next, '1000', 301)).toBe(1_000);
    expect(next['mesh-deadline-ms']).toBe('699');
  });

  it('a next hop that arrives after the deadline has passed keeps the chain deadline (no fresh budget)', () => {
    const hops = new HopDeadlines();
    const at = hops.carry(FROM, {}, '1000', 0)!;
    hops.redirected(FROM, '/loop', '1000', at, 995); // answered 5 ms before the deadline
    const next: Record<string, unknown> = { 'mesh-deadline-ms': '1000' };
    expect(hops.carry(FROM, next, '1000', 1_010)).toBe(1_000); // dispatched 10 ms after it
    expect(next['mesh-deadline-ms']).toBe('0');
  });

  it('past the hop window, a request to the same URL is a new call with its own budget', () => {
    const hops = new HopDeadlines();
    const at = hops.carry(FROM, {}, '1000', 0)!;
    hops.redirected(FROM, '/loop', '1000', at, 300);
    const later: Record<string, unknown> = { 'mesh-deadline-ms': '1000' };
    expect(hops.carry(FROM, later, '1000', 1_400)).toBe(2_400);
    expect(later['mesh-deadline-ms']).toBe('1000');
  });
});
