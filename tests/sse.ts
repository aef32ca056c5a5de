/** Reading a Server-Sent Events response in tests. */

export interface SseEvent {
  readonly event: string;
  readonly data: unknown;
}

/** The events of a response as they arrive, `data` parsed as JSON; cancels the body when left. */
export async function* sseEvents(res: Response): AsyncGenerator<SseEvent> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const field = (name: string) =>
          block.split("\n").find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
        yield { event: field("event") ?? "", data: JSON.parse(field("data") ?? "null") };
      }
    }
  } finally {
    await reader.cancel();
  }
}

/** The first `count` events of a response. */
export async function firstEvents(res: Response, count: number): Promise<SseEvent[]> {
  const out: SseEvent[] = [];
  if (count <= 0) return out;
  for await (const event of sseEvents(res)) {
    out.push(event);
    if (out.length >= count) break;
  }
  return out;
}
