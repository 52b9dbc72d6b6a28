/**
 * The router is the leaf of the logical stack: it chooses the concrete destination a call goes to. Until
 * routing rules exist, a logical service has one destination, `primary`.
 */
import type { CallContext } from '../core/context.js';
import type { MeshRequest, MeshResponse } from '../core/message.js';
import type { Service, ServiceStatus } from '../core/service.js';

/**
 * Sends every call to one destination.
 *
 * @example
 * ```ts
 * const router = new SingleRouter('primary', concreteStack);
 * ```
 */
export class SingleRouter implements Service {
  constructor(
    readonly destinationName: string,
    private readonly destination: Service,
  ) {}
  get status(): ServiceStatus {
    return this.destination.status;
  }
  call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    ctx.destination = this.destinationName;
    return this.destination.call(req, ctx);
  }
  close(): Promise<void> {
    return this.destination.close();
  }
}
