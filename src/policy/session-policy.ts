// Who a session acts as, statement by statement: the user's own roles, or the roles of an actor asserted with a
// verified token (SET [LOCAL] pgwarden.actor), or the emergency role of a break-glass window. Roles are looked up
// in the runtime current at each statement, so a reload reaches sessions that are already open.

import { verifyJwt } from '../auth/jwt.js';
import { pgwError, type PgwardenError } from '../core/errors.js';
import type { UserEntry } from '../frontend/runtime.js';
import type { PolicyRuntime } from './policy-runtime.js';
import { RoleSet, type CompiledRole } from './rules.js';

export interface Actor {
  readonly subject: string;
  readonly roles: readonly string[];
  /** SET LOCAL: ends with the transaction. */
  readonly local: boolean;
}

export interface BreakGlass {
  readonly reason: string;
  readonly role: string;
  readonly until: number;
}

export type ActorResult = { ok: true; actor: Actor } | { ok: false; error: PgwardenError; reason: string };

export class SessionPolicy {
  private actor: Actor | null = null;
  private glass: BreakGlass | null = null;
  private cached: RoleSet | null = null;
  private cachedFor: PolicyRuntime | null = null;

  constructor(
    readonly userName: string,
    private readonly user: UserEntry,
    private readonly database: string,
    private readonly clientAddress: string | null,
  ) {}

  get currentActor(): Actor | null {
    return this.actor;
  }

  get breakGlass(): BreakGlass | null {
    return this.glass;
  }

  /** The roles in force now. Call breakGlassExpired() first so an elapsed window is closed (and audited). */
  roles(rt: PolicyRuntime): RoleSet {
    if (this.cached && this.cachedFor === rt) return this.cached;
    const names = this.glass ? [this.glass.role] : this.actor ? this.actor.roles : this.user.roles;
    const roles: CompiledRole[] = [];
    for (const name of names) {
      const role = rt.roles.get(name);
      // A role applies only in its databases and from its addresses; one removed by a reload is gone.
      if (!role) continue;
      if (role.databases && !role.databases.has(this.database)) continue;
      if (role.cidrs && (this.clientAddress === null || !role.cidrs.has(this.clientAddress))) continue;
      roles.push(role);
    }
    this.cached = new RoleSet(roles, rt.searchPath);
    this.cachedFor = rt;
    return this.cached;
  }

  private changed(): void {
    this.cached = null;
  }

  /** SET [LOCAL] pgwarden.actor = '<token>': verify, check the roles it asks for, and act as that person. */
  assertActor(rt: PolicyRuntime, token: string, local: boolean, now = Date.now()): ActorResult {
    const allowed = this.user.actorRoles;
    if (!allowed) {
      return {
        ok: false,
        error: pgwError('PGW_ERR_ACTOR_NOT_ALLOWED', this.userName),
        reason: 'user may not assert actors',
      };
    }
    const settings = rt.actorTokens;
    if (!settings) return refused('actor tokens are not configured (access.jwt)');
    const result = verifyJwt(token, settings.verify, now);
    if (!result.ok) return refused(result.message);
    const subject = result.claims[settings.subjectClaim];
    if (typeof subject !== 'string' || subject.length === 0 || subject.length > 256) {
      return refused(`claim ${settings.subjectClaim} must be a non-empty string`);
    }
    const claimed = result.claims[settings.rolesClaim];
    if (!Array.isArray(claimed) || claimed.length === 0 || !claimed.every((r) => typeof r === 'string')) {
      return refused(`claim ${settings.rolesClaim} must be a non-empty array of role names`);
    }
    const roles = claimed as string[];
    const outside = roles.find((r) => !allowed.has(r));
    if (outside !== undefined) return refused(`role "${outside}" is not one this user may grant to actors`);
    this.actor = { subject, roles, local };
    this.changed();
    return { ok: true, actor: this.actor };
  }

  /** RESET pgwarden.actor, or the end of the transaction for SET LOCAL. Returns the actor that ended. */
  clearActor(onlyLocal: boolean): Actor | null {
    const actor = this.actor;
    if (!actor || (onlyLocal && !actor.local)) return null;
    this.actor = null;
    this.changed();
    return actor;
  }

  /** SET pgwarden.break_glass = '<reason>'. */
  startBreakGlass(reason: string, now = Date.now()): BreakGlass | PgwardenError {
    const glass = this.user.breakGlass;
    if (!glass) return pgwError('PGW_ERR_BREAK_GLASS_NOT_ALLOWED', this.userName);
    if (reason.trim().length === 0) return pgwError('PGW_ERR_BREAK_GLASS_REASON');
    this.glass = { reason: reason.slice(0, 1024), role: glass.role, until: now + glass.maxDurationMs };
    this.changed();
    return this.glass;
  }

  /** RESET pgwarden.break_glass. Returns the window that ended. */
  endBreakGlass(): BreakGlass | null {
    const glass = this.glass;
    this.glass = null;
    if (glass) this.changed();
    return glass;
  }

  /** Closes a window whose time is up; returns it so the caller can audit and log the end. */
  breakGlassExpired(now = Date.now()): BreakGlass | null {
    if (this.glass && now >= this.glass.until) return this.endBreakGlass();
    return null;
  }
}

function refused(reason: string): ActorResult {
  return { ok: false, error: pgwError('PGW_ERR_ACTOR_TOKEN', reason), reason };
}
