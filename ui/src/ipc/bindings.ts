// TEMPORARY (replaced by the generated file)
import { invoke, Channel } from "@tauri-apps/api/core";
export type Mode = "chat" | "voice" | "guide" | "edit";
export type MediaKind = "image" | "audio";
export type Segment = { "kind": "text", text: string, } | { "kind": "image", file: string, width: number, height: number, } | { "kind": "audio", file: string, duration_s: number, };
export type Role = "user" | "assistant";
export type MessageStatus = "streaming" | "done" | "cancelled" | "failed" | "interrupted";
export type MessageView = { id: number, role: Role, mode: Mode, status: MessageStatus, segments: Array<Segment>, error: string | null, created_ms: number, };
export type ConversationSummary = { id: number, title: string, updated_ms: number, messages: number, };
export type ConversationView = { summary: ConversationSummary, messages: Array<MessageView>, };
export type Attachment = { kind: MediaKind, segment: Segment, name: string, };
export type SendArgs = { conversation_id: number | null, text: string, attachments: Array<Attachment>, mode: Mode, max_new_tokens: number | null, };
export type TurnStarted = { conversation_id: number, user: MessageView | null, message_id: number, request_id: number, };
export type StreamEvent = { "kind": "text", text: string, } | { "kind": "segment", segment: Segment, } | { "kind": "speech_preview", index: number, segment: Segment, } | { "kind": "progress", stage: string, step: number, total: number, } | { "kind": "done", message: MessageView, tokens_per_s: number, } | { "kind": "failed", error: AppError, message: MessageView | null, };
export type LoadEvent = { "kind": "stage", stage: string, index: number, total: number, };
export type LoadArgs = { model_dir: string | null, device: string, };
export type ModelInfo = { model_dir: string, label: string, random_weights: boolean, layers: number, hidden_size: number, vocab_size: number, device: string, load_s: number, };
export type ExportFormat = "markdown" | "html" | "json";
export type ExportResult = { path: string, };
export type AppError = { code: ErrorCode, message: string, };
export type ErrorCode = "NO_MODEL" | "MODEL_LOAD" | "ENGINE" | "INVALID_INPUT" | "NOT_FOUND" | "STORAGE" | "INTERNAL";
export function modelStatus(): Promise<ModelInfo | null> { return invoke("model_status", {}); }
export function loadModel(args: LoadArgs, onEvent: Channel<LoadEvent>): Promise<ModelInfo> { return invoke("load_model", { args, onEvent }); }
export function sendMessage(args: SendArgs, onEvent: Channel<StreamEvent>): Promise<TurnStarted> { return invoke("send_message", { args, onEvent }); }
export function regenerate(conversationId: number, onEvent: Channel<StreamEvent>): Promise<TurnStarted> { return invoke("regenerate", { conversationId, onEvent }); }
export function cancel(requestId: number): Promise<void> { return invoke("cancel", { requestId }); }
export function listConversations(): Promise<ConversationSummary[]> { return invoke("list_conversations", {}); }
export function getConversation(id: number): Promise<ConversationView> { return invoke("get_conversation", { id }); }
export function deleteConversation(id: number): Promise<void> { return invoke("delete_conversation", { id }); }
export function searchConversations(query: string): Promise<ConversationSummary[]> { return invoke("search_conversations", { query }); }
export function exportConversation(id: number, format: ExportFormat): Promise<ExportResult> { return invoke("export_conversation", { id, format }); }
export function importMedia(name: string, bytes: Uint8Array): Promise<Attachment> { return invoke("import_media", bytes, { headers: { "x-file-name": encodeURIComponent(name) } }); }
