import {connect, RequestError} from "../../client.js";
import type {Protocol} from "../../../../schemas/chat.js"; // websock-actors typescript examples.chat:app

export async function chat(): Promise<string[]> {
  const client = connect<Protocol>("ws://127.0.0.1/", {token: async () => "ann", backoff: {initial: 100}});
  const joined = await client.request({type: "join", room: "lobby", name: "ann"});
  const members: string[] = joined.members;
  const said = await client.request({type: "say", room: "lobby", text: "hi"}, {timeout: 500});
  const kind: "said" | "ack" = said.type;
  client.on("message", (message) => console.log(message.name, message.text, message.seq, kind));
  client.on("resumed", (event) => console.log(event.recovered, event.replayed, event.lost.length));
  client.on("reconnecting", (event) => console.log(event.delay));
  client.on("closed", (event) => console.log(event.code));
  client.on("*", (message) => console.log(message.type));
  client.send({type: "say", room: "lobby", text: "no reply wanted"});
  try {
    await client.request({type: "say", room: "attic", text: "hi"});
  } catch (error) {
    if (error instanceof RequestError) console.log(error.code, error.detail);
  }
  const untyped = connect("ws://127.0.0.1/");
  const anything = await untyped.request({type: "whatever", n: 1});
  console.log(anything);
  client.close(1000);
  return members;
}
