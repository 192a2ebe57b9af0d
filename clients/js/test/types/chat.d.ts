// A protocol of the shape `websock-actors typescript` writes (a part of the chat's).
export interface Join { type: "join"; id?: number | string | null; room: string; name: string; }
export interface Say { type: "say"; id?: number | string | null; room: string; text: string; }
export interface Joined { type: "joined"; id?: number | string; room: string; members: string[]; }
export interface Said { type: "said"; id?: number | string; }
export interface Ack { type: "ack"; id?: number | string; }
export interface ChatMessage { type: "message"; room: string; name: string; text: string; ts: number; seq?: number; epoch?: string; }
export interface MemberLeft { type: "member_left"; room: string; name: string; seq?: number; epoch?: string; }
export interface ErrorReply { type: "error"; id?: number | string; code: string; detail: string; errors: unknown[]; }
export type Request = Join | Say;
export type ServerMessage = Joined | Said | Ack | ChatMessage | MemberLeft | ErrorReply;
export interface RequestReplies { join: Joined; say: Said | Ack; }
export interface PushTypes { message: ChatMessage; member_left: MemberLeft; }
export interface Protocol { request: Request; replies: RequestReplies; pushes: PushTypes; server: ServerMessage; }
