/**
 * Response classification: one decision, read by retries, failure accrual and the circuit breaker alike, so
 * the three never disagree about what a failure is. What is measured (this) is kept apart from what acts on
 * it (retry policy, accrual policy, breaker policy) — Finagle's `ResponseClassifier`.
 *
 * The default: connection errors and 502/503/504 are failures that a retry may fix; other 5xx are failures a
 * retry will not fix; 4xx are the caller's problem, not the endpoint's, so they count as successes; 429, and
 * 503 with Retry-After, are back-pressure (retryable after the server's delay, and not held against the
 * endpoint's health). A caller's own abort and a passed deadline are neither: they say nothing about the
 * endpoint. Nor do the caller's invalid request, an empty endpoint set (the destination's state) or an open
 * circuit's refusal: they are `ignored`, so no breaker, accrual or budget counts them.
 */
import type { CallContext } from '../core/context.js';
import { MeshError } from '../core/errors.js';
import { responseHeader, type MeshRequest, type MeshResponse } from '../core/message.js';
import { defineParam } from '../core/params.js';

/** The outcome of one attempt. */
export interface Classification {
  /** `success` and `ignored` do not count against the endpoint; `failure` does. */
  readonly kind: 'success' | 'failure' | 'ignored';
  /** Whether another attempt could succeed (subject to the request being safe to replay). */
  readonly retryable: boolean;
  /** The server asked us to slow down (429, or 503 with Retry-After). */
  readonly backpressure: boolean;
}

/** What a classifier sees: the request, and either the response (headers only) or the error. */
export interface ClassifyInput {
  readonly req: MeshRequest;
  readonly ctx: CallContext;
  readonly res?: MeshResponse | undefined;
  readonly error?: unknown;
}

/**
 * Decides what an attempt's outcome means.
 *
 * @example
 * ```ts
 * // Treat 409 as retryable for this service.
 * const classifier: Classifier = (i) =>
 *   i.res?.statusCode === 409 ? Classified.retryableFailure : defaultClassifier(i);
 * ```
 */
export type Classifier = (input: ClassifyInput) => Classification;

/** The shared classification values (frozen; compare by field, not identity). */
export const Classified = Object.freeze({
  success: Object.freeze({ kind: 'success', retryable: false, backpressure: false }) as Classification,
  retryableFailure: Object.freeze({
    kind: 'failure',
    retryable: true,
    backpressure: false,
  }) as Classification,
  failure: Object.freeze({ kind: 'failure', retryable: false, backpressure: false }) as Classification,
  backpressure: Object.freeze({ kind: 'ignored', retryable: true, backpressure: true }) as Classification,
  /** Retryable, and not the endpoint's fault (the idle-close race). */
  notProcessed: Object.freeze({ kind: 'ignored', retryable: true, backpressure: false }) as Classification,
  ignored: Object.freeze({ kind: 'ignored', retryable: false, backpressure: false }) as Classification,
});

/**
 * The default classifier (see the file comment for the table).
 *
 * @example
 * ```ts
 * defaultClassifier({ req, ctx, res }).kind; // 'failure' for a 503
 * ```
 */
export const defaultClassifier: Classifier = (input) => {
  const res = input.res;
  if (res !== undefined) {
    const s = res.statusCode;
    if (s < 500) return s === 429 ? Classified.backpressure : Classified.success;
    if (s === 503)
      return responseHeader(res, 'retry-after') !== undefined
        ? Classified.backpressure
        : Classified.retryableFailure;
    if (s === 502 || s === 504) return Classified.retryableFailure;
    return Classified.failure;
  }
  const err = input.error;
  if (
    err instanceof Error &&
    (err.name === 'AbortError' || (err as MeshError).code === 'MESH_DEADLINE_EXCEEDED')
  ) {
    return Classified.ignored;
  }
  if (err instanceof MeshError) {
    const code = err.code;
    // The caller's own mistake, refused at the entry point or by undici before a byte was sent: it says
    // nothing about an endpoint, a destination or a budget.
    if (code === 'MESH_INVALID_REQUEST') return Classified.ignored;
    // No endpoint to send to, or an open circuit: the destination's state, not a failure of it (counted,
    // it would keep a breaker open after the endpoints came back).
    if (
      code === 'MESH_NO_HEALTHY_ENDPOINTS' ||
      code === 'MESH_SERVICE_NOT_FOUND' ||
      code === 'MESH_DISCOVERY_FAILED' ||
      code === 'MESH_CIRCUIT_OPEN'
    )
      return err.retryable ? Classified.notProcessed : Classified.ignored;
    if (code === 'MESH_TRANSPORT') {
      const t = err as { idleClose?: boolean; unprocessed?: boolean };
      return t.idleClose || t.unprocessed ? Classified.notProcessed : Classified.retryableFailure;
    }
    if (err.code === 'MESH_ATTEMPT_TIMEOUT') return Classified.retryableFailure;
    // Refused by the mesh's own admission bound, or aborted by the mesh's own close(): says nothing about the
    // destination's health, and is never resent.
    if (err.code === 'MESH_OVERLOADED' || err.code === 'MESH_CLOSED') return Classified.ignored;
    return err.retryable ? Classified.retryableFailure : Classified.failure;
  }
  return Classified.retryableFailure;
};

/** The classifier a service uses (per-service config `classifier`). */
export const ClassifierParam = defineParam<Classifier>('classifier', defaultClassifier);

/**
 * Classifies one attempt's outcome (`res`, or else `error`) once: later calls for the same outcome with the
 * same classifier, on the same call context, return the first answer. The modules that count attempts share
 * it, so a classifier runs once per attempt rather than once per module (it should be a pure function of
 * its input). A classifier that throws is not cached: each caller handles that in its own way.
 *
 * @example
 * ```ts
 * const { kind } = classifyAttempt(defaultClassifier, req, ctx, res, undefined);
 * ```
 */
export function classifyAttempt(
  classifier: Classifier,
  req: MeshRequest,
  ctx: CallContext,
  res: MeshResponse | undefined,
  error: unknown,
): Classification {
  const outcome = res ?? error;
  const a = ctx.attempt;
  if (outcome !== undefined && a.classifiedOutcome === outcome && a.classifiedBy === classifier)
    return a.classification as Classification;
  const c = classifier(res !== undefined ? { req, ctx, res } : { req, ctx, error });
  a.classifiedOutcome = outcome;
  a.classifiedBy = classifier;
  a.classification = c;
  return c;
}
