// The one options helper (src/core/validate.ts): declared specs resolve to frozen values with their defaults,
// and every rejection is a ConfigError whose path uses optionPath's format.
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import {
  array,
  boolean,
  custom,
  describeNumber,
  duration,
  func,
  HTTP_TOKEN,
  number,
  object,
  oneOf,
  optional,
  record,
  string,
  toggle,
} from '../../src/core/validate.js';

function rejection(f: () => unknown): ConfigError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

const spec = object({
  maxAttempts: number({ min: 1, max: 100, integer: true, default: 3 }),
  timeoutMs: duration({ min: 0, exclusiveMin: true, infinity: true, default: Infinity }),
  on: boolean({ default: false }),
  mode: oneOf(['a', 'b'] as const, { default: 'a' }),
  name: optional(string({ nonEmpty: true })),
  headers: optional(record(string(), { key: string({ token: true, expected: 'a header name' }) })),
  to: array(object({ weight: number({ min: 0, default: 1 }) }), { minLength: 1, default: [] }),
  nested: object({ baseMs: number({ min: 0, default: 5 }) }),
});

describe('object specs', () => {
  it('fill in every default and freeze the result, nested ones included', () => {
    const r = spec.resolve(undefined, 'x');
    expect(r).toEqual({
      maxAttempts: 3,
      timeoutMs: Infinity,
      on: false,
      mode: 'a',
      to: [],
      nested: { baseMs: 5 },
    });
    expect(Object.isFrozen(r)).toBe(true);
    expect(Object.isFrozen(r.nested)).toBe(true);
    expect('name' in r).toBe(false);
  });

  it('keep what was given', () => {
    const r = spec.resolve(
      { maxAttempts: 5, name: 'n', to: [{}, { weight: 2 }], headers: { 'x-a': 'b' } },
      'x',
    );
    expect(r.maxAttempts).toBe(5);
    expect(r.name).toBe('n');
    expect(r.to).toEqual([{ weight: 1 }, { weight: 2 }]);
    expect(r.headers).toEqual({ 'x-a': 'b' });
  });

  it.each([
    [{ maxAttempts: 0 }, 'x.maxAttempts', 'an integer >= 1 and <= 100'],
    [{ maxAttempts: 1.5 }, 'x.maxAttempts', 'an integer >= 1 and <= 100'],
    [{ timeoutMs: 0 }, 'x.timeoutMs', 'a number of milliseconds > 0, or Infinity'],
    [{ timeoutMs: Number.NaN }, 'x.timeoutMs', 'a number of milliseconds > 0, or Infinity'],
    [{ on: 'yes' }, 'x.on', 'a boolean'],
    [{ mode: 'c' }, 'x.mode', 'one of "a", "b"'],
    [{ name: '' }, 'x.name', 'a non-empty string'],
    [{ headers: { 'bad name': 'v' } }, 'x.headers["bad name"]', 'a header name'],
    [{ headers: { 'x-a': 1 } }, 'x.headers.x-a', 'a string'],
    [{ to: [] }, 'x.to', 'a non-empty array'],
    [{ to: [{}, { weight: -1 }] }, 'x.to[1].weight', 'a finite number >= 0'],
    [{ nested: 5 }, 'x.nested', 'an object'],
    [{ nested: { baseMS: 5 } }, 'x.nested.baseMS', 'no such option (a known option is one of: baseMs)'],
    [{ 'odd.key': 1 }, 'x["odd.key"]', 'no such option'],
  ])('reject %j at its path', (input, path, expected) => {
    const e = rejection(() => spec.resolve(input, 'x'));
    expect(e.path).toBe(path);
    expect(e.message).toContain(`expected ${expected}`);
  });

  it('run a check across keys on the resolved value', () => {
    const range = object(
      { minMs: number({ min: 0, default: 1 }), maxMs: number({ min: 0, default: 10 }) },
      {
        check: (r, path) => {
          if (r.maxMs < r.minMs)
            throw new ConfigError(`${path}.maxMs`, r.maxMs, `at least minMs (${r.minMs})`);
        },
      },
    );
    expect(rejection(() => range.resolve({ minMs: 20 }, 'r')).path).toBe('r.maxMs');
  });

  it('a required object rejects an absent value at its own path', () => {
    const e = rejection(() =>
      object({}, { required: true, expected: 'an object { a }' }).resolve(undefined, 'p'),
    );
    expect(e.path).toBe('p');
    expect(e.message).toContain('expected an object { a }');
  });
});

describe('leaf specs', () => {
  it('describe numbers the one way', () => {
    expect(describeNumber({ min: 0, exclusiveMin: true, max: 1 })).toBe('a finite number > 0 and <= 1');
    expect(describeNumber({ min: 0, integer: true })).toBe('an integer >= 0');
    expect(describeNumber({ min: 30, unit: 'milliseconds' })).toBe('a finite number of milliseconds >= 30');
  });

  it('without a default, an absent value is an error', () => {
    expect(rejection(() => number().resolve(undefined, 'n')).path).toBe('n');
  });

  it('custom checks get the path', () => {
    const fn = custom((v, path) => {
      if (typeof v !== 'function') throw new ConfigError(path, v, 'a function');
      return v;
    });
    expect(rejection(() => fn.resolve(1, 'a.b')).path).toBe('a.b');
  });

  it('a function spec names what the function is for', () => {
    const f = (): boolean => true;
    expect(func().resolve(f, 'trust')).toBe(f);
    const e = rejection(() => func({ expected: 'a function (req) => boolean' }).resolve(true, 'trust'));
    expect(e.path).toBe('trust');
    expect(e.message).toContain('expected a function (req) => boolean');
  });

  it('the one HTTP token regex', () => {
    expect(HTTP_TOKEN.test("!#$%&'*+-.^_`|~09azAZ")).toBe(true);
    expect(HTTP_TOKEN.test('a b')).toBe(false);
    expect(HTTP_TOKEN.test('')).toBe(false);
  });
});

describe('toggle', () => {
  const on = toggle(object({ n: number({ default: 1 }) }), {
    whenAbsent: 'on',
    expected: 'an object, true or false',
  });
  const off = toggle(object({ n: number({ default: 1 }) }), {
    whenAbsent: 'off',
    expected: 'true, false or an object',
  });
  it('false is off, true the defaults, absent as declared', () => {
    expect(on.resolve(false, 'p')).toBe(false);
    expect(on.resolve(true, 'p')).toBe(on.defaults);
    expect(on.resolve(undefined, 'p')).toBe(on.defaults);
    expect(off.resolve(undefined, 'p')).toBe(false);
    expect(off.resolve({ n: 2 }, 'p')).toEqual({ n: 2 });
  });
  it('anything else is an error at the path', () => {
    const e = rejection(() => on.resolve('yes', 'p'));
    expect(e.path).toBe('p');
    expect(e.message).toContain('expected an object, true or false');
  });
});
