/**
 * The typed target of each level of a call: what a stack of that level is built for. linkerd2-proxy builds
 * each of its stacks from a typed target (`Logical`, `Concrete`, `Endpoint`, linkerd2-proxy
 * `linkerd/app/outbound/src/{logical,concrete,endpoint}.rs`) and its layers read the parameters they need
 * from it (`svc::Param<T>`); here a module reads its level's target from `env.target` (./stack.ts).
 *
 * A target names the thing one built stack serves (which service, which destination, which address), so
 * that two stacks of one level differ only by their targets. How the stack behaves (timeouts, retries, the
 * retry budget, the breaker's options) is configuration and lives in typed params (./params.ts): a user sets
 * and shares params (`shareRetryBudget` gives several services one budget, as Finagle shares a budget as a
 * `Stack.Param`), while a target is fixed by where the stack sits. The logical service's routes are not in
 * its target either: they are the router's (the logical stack's leaf), which no module reads, and they change
 * at run time (`mesh.setRoutes`) without rebuilding the stack.
 */

/** What a logical stack is built for: one logical service (the URL host, or a configured name). */
export interface LogicalTarget {
  /** The logical service name. */
  readonly service: string;
}

/** What a concrete stack is built for: one destination of a logical service (discovery and a balancer). */
export interface ConcreteTarget {
  /** The logical service name. */
  readonly service: string;
  /** The destination name (`primary`, or a route's destination such as `v2`). */
  readonly destination: string;
  /** The kind of discovery it reads (`static`, `consul`, `dns`, ...). */
  readonly discovery: string;
  /** The kind of balancer over its endpoints (`p2c-peak-ewma`, `round-robin`, ...). */
  readonly balancer: string;
}

/** What an endpoint stack is built for: one address of a destination (its leaf is that address's pool). */
export interface EndpointTarget {
  /** The logical service name. */
  readonly service: string;
  /** The destination name the endpoint belongs to. */
  readonly destination: string;
  /** The endpoint address, `host:port` (`[v6]:port` for IPv6). */
  readonly address: string;
  /**
   * The endpoint's tags and metadata (e.g. Consul's) as discovery reported them when the stack was built: an
   * update that changes only these keeps the endpoint's stack.
   */
  readonly tags: readonly string[];
  readonly meta: Readonly<Record<string, string>>;
}

/** The target of each level, by level name. */
export interface Targets {
  readonly logical: LogicalTarget;
  readonly concrete: ConcreteTarget;
  readonly endpoint: EndpointTarget;
}
