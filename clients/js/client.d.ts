// Types of the browser client (src/client.js). `connect<Protocol>(url)` with the Protocol that
// `websock-actors typescript module:app` writes types requests, replies and pushes by `type`.

/** What a protocol gives the client: the requests, each request type's reply, each push
 * type's message, and every message the server may send. */
export interface ProtocolShape {
  request: {type: string};
  replies: object;
  pushes: object;
  server: unknown;
}

/** Without generated types: any message, any reply. */
export interface AnyProtocol {
  request: {type: string; [field: string]: unknown};
  replies: Record<string, any>;
  pushes: Record<string, any>;
  server: any;
}

/** The reply to a request of type `K` (unknown for a type the protocol does not list). */
export type ReplyTo<P extends ProtocolShape, K> = K extends keyof P["replies"] ? P["replies"][K] : unknown;

export interface BackoffOptions {
  /** ms before the first reconnect (250) */
  initial?: number;
  /** times this after each failed attempt (2) */
  factor?: number;
  /** ms at most (5000) */
  max?: number;
  /** 0..1: up to this part of each delay is taken off at random (0.5) */
  jitter?: number;
}

export interface ConnectOptions {
  /** resume the session after a reconnect when the server offers sessions (true) */
  resume?: boolean;
  /** sent as the `token` query parameter; a function is called before every connection */
  token?: string | null | (() => string | null | undefined | Promise<string | null | undefined>);
  backoff?: BackoffOptions | ((attempt: number) => number);
  /** ms a request waits for its reply (10000) */
  requestTimeout?: number;
  /** a WebSocket implementation (the `ws` package in Node); default: globalThis.WebSocket */
  WebSocket?: new (url: string) => unknown;
}

export interface RoomPosition {
  seq: number;
  epoch: string;
}

export interface OpenEvent {
  reconnects: number;
}

export interface ReconnectingEvent {
  attempt: number;
  delay: number;
  code: number;
  reason: string;
}

/** The server's answer to a resume that restored the session. */
export interface ResumedEvent {
  type: "resumed";
  recovered: boolean;
  restored: true;
  session: string;
  lost: string[];
  replayed: number;
  positions: Record<string, RoomPosition>;
}

/** The session could not be restored (expired, unknown, refused): join again. */
export interface ResetEvent {
  type?: "resumed" | "error";
  restored?: false;
  lost?: string[];
  code?: string;
  detail?: string;
}

export interface ClosedEvent {
  code: number;
  reason: string;
}

export declare const RECONNECT_CODES: ReadonlySet<number>;

export declare function backoffDelay(attempt: number, options?: BackoffOptions): number;

export declare class RequestError extends Error {
  /** the server's error code, or "request_timeout", or "connection_lost" */
  code: string;
  detail: string;
  errors: unknown[] | undefined;
  reply: unknown;
}

export declare class Client<P extends ProtocolShape = AnyProtocol> {
  constructor(url: string, options?: ConnectOptions);
  readonly url: string;
  readonly session: string | null;
  readonly positions: Record<string, RoomPosition>;
  readonly reconnects: number;
  readonly connected: boolean;
  request<T extends P["request"]>(message: T, options?: {timeout?: number}): Promise<ReplyTo<P, T["type"]>>;
  send(message: P["request"]): void;
  close(code?: number, reason?: string): void;
  on(type: "open", handler: (event: OpenEvent) => void): () => void;
  on(type: "reconnecting", handler: (event: ReconnectingEvent) => void): () => void;
  on(type: "resumed", handler: (event: ResumedEvent) => void): () => void;
  on(type: "reset", handler: (event: ResetEvent) => void): () => void;
  on(type: "closed", handler: (event: ClosedEvent) => void): () => void;
  on(type: "*", handler: (message: P["server"]) => void): () => void;
  on<K extends keyof P["pushes"]>(type: K, handler: (message: P["pushes"][K]) => void): () => void;
}

export declare function connect<P extends ProtocolShape = AnyProtocol>(url: string, options?: ConnectOptions): Client<P>;
