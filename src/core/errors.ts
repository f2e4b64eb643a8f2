/**
 * One error type for the whole product. `code` is stable (tests, the API and scripts rely
 * on it); `message` says what happened, to what, and what to do next. Messages never carry
 * keys, tokens or credentials.
 */
export type CairnErrorCode =
  | 'CAIRN_USAGE'
  | 'CAIRN_CHUNK_HEADER_INVALID'
  | 'CAIRN_CHUNK_TAG_MISMATCH'
  | 'CAIRN_CHUNK_ID_MISMATCH'
  | 'CAIRN_CHUNK_TOO_LARGE'
  | 'CAIRN_CHUNK_ID_INVALID'
  | 'CAIRN_CHUNK_MISSING'
  | 'CAIRN_MANIFEST_INVALID'
  | 'CAIRN_TOKEN_INVALID'
  | 'CAIRN_TOKEN_EXPIRED'
  | 'CAIRN_TOKEN_USED'
  | 'CAIRN_TOKEN_LOCKED'
  | 'CAIRN_PAIR_PIN_MISMATCH'
  | 'CAIRN_PAIR_RATE_LIMITED'
  | 'CAIRN_RECOVERY_KEY_INVALID'
  | 'CAIRN_AUTH_REQUIRED'
  | 'CAIRN_AUTH_INVALID'
  | 'CAIRN_AUTH_REVOKED'
  | 'CAIRN_API_APPEND_ONLY'
  | 'CAIRN_API_NOT_FOUND'
  | 'CAIRN_API_BAD_REQUEST'
  | 'CAIRN_API_BODY_TOO_LARGE'
  | 'CAIRN_API_METHOD'
  | 'CAIRN_API_UNEXPECTED'
  | 'CAIRN_SNAPSHOT_NOT_FOUND'
  | 'CAIRN_SNAPSHOT_AMBIGUOUS'
  | 'CAIRN_SNAPSHOT_INCOMPLETE'
  | 'CAIRN_STORE_NOT_INITIALIZED'
  | 'CAIRN_STORE_ALREADY_INITIALIZED'
  | 'CAIRN_STORE_LOCKED'
  | 'CAIRN_STORE_IO'
  | 'CAIRN_STORE_FULL'
  | 'CAIRN_AGENT_NOT_FOUND'
  | 'CAIRN_AGENT_NOT_PAIRED'
  | 'CAIRN_BOX_UNREACHABLE'
  | 'CAIRN_BOX_ERROR'
  | 'CAIRN_RESTORE_UNSAFE_PATH'
  | 'CAIRN_RESTORE_FAILED'
  | 'CAIRN_SOURCE_INVALID'
  | 'CAIRN_SOURCE_BUSY'
  | 'CAIRN_DISCOVERY_NOT_FOUND'
  | 'CAIRN_AGENT_RUNNING'
  | 'CAIRN_INTERRUPTED'
  | 'CAIRN_VOLUME_MOUNTED'
  | 'CAIRN_VOLUME_TARGET_INVALID'
  | 'CAIRN_VOLUME_VERIFY_FAILED'
  | 'CAIRN_VOLUME_LVM_FAILED'
  | 'CAIRN_ADMIN_PROTOCOL'
  | 'CAIRN_HW_PARSE'
  | 'CAIRN_HW_INVALID_ARGUMENT'
  | 'CAIRN_HW_CONFIRM_REQUIRED'
  | 'CAIRN_HW_REFUSED'
  | 'CAIRN_HW_COMMAND_FAILED'
  | 'CAIRN_HW_UNAVAILABLE'
  | 'CAIRN_HW_SIM_STATE'
  | 'CAIRN_ESCROW_INVALID'
  | 'CAIRN_SETUP_MODE'
  | 'CAIRN_ROLE_MISMATCH'
  | 'CAIRN_SECONDARY_NOT_LINKED'
  | 'CAIRN_RECOVERY_REFUSED'
  | 'CAIRN_BLAKE3_UNAVAILABLE';

const HTTP_STATUS: Partial<Record<CairnErrorCode, number>> = {
  CAIRN_USAGE: 400,
  CAIRN_CHUNK_HEADER_INVALID: 422,
  CAIRN_CHUNK_TAG_MISMATCH: 422,
  CAIRN_CHUNK_ID_MISMATCH: 422,
  CAIRN_CHUNK_TOO_LARGE: 413,
  CAIRN_CHUNK_ID_INVALID: 400,
  CAIRN_CHUNK_MISSING: 404,
  CAIRN_MANIFEST_INVALID: 422,
  CAIRN_TOKEN_INVALID: 403,
  CAIRN_TOKEN_EXPIRED: 403,
  CAIRN_TOKEN_USED: 403,
  CAIRN_TOKEN_LOCKED: 403,
  CAIRN_PAIR_RATE_LIMITED: 429,
  CAIRN_AUTH_REQUIRED: 401,
  CAIRN_AUTH_INVALID: 401,
  CAIRN_AUTH_REVOKED: 401,
  CAIRN_API_APPEND_ONLY: 403,
  CAIRN_API_NOT_FOUND: 404,
  CAIRN_API_BAD_REQUEST: 400,
  CAIRN_API_BODY_TOO_LARGE: 413,
  CAIRN_API_METHOD: 405,
  CAIRN_SNAPSHOT_NOT_FOUND: 404,
  CAIRN_SNAPSHOT_INCOMPLETE: 409,
  CAIRN_STORE_FULL: 507,
  CAIRN_HW_INVALID_ARGUMENT: 400,
  CAIRN_HW_CONFIRM_REQUIRED: 400,
  CAIRN_HW_REFUSED: 409,
  CAIRN_HW_SIM_STATE: 409,
  CAIRN_ROLE_MISMATCH: 409,
  CAIRN_AGENT_NOT_FOUND: 404,
  CAIRN_SECONDARY_NOT_LINKED: 409,
  CAIRN_RECOVERY_REFUSED: 403,
  CAIRN_ESCROW_INVALID: 404,
};

export class CairnError extends Error {
  readonly code: CairnErrorCode;
  readonly details?: Record<string, unknown>;

  constructor(code: CairnErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'CairnError';
    this.code = code;
    this.details = details;
  }

  /** The one place that maps error codes to HTTP statuses. */
  get httpStatus(): number {
    return HTTP_STATUS[this.code] ?? 500;
  }

  static is(err: unknown, code?: CairnErrorCode): err is CairnError {
    return err instanceof CairnError && (code === undefined || err.code === code);
  }
}

/** Best-effort message of an unknown thrown value, for logs and CLI output. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** errno code of a Node system error, if any. */
export function errnoCode(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string') {
    return (err as { code: string }).code;
  }
  return undefined;
}
