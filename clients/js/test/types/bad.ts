import {connect} from "../../client.js";
import type {Protocol} from "../../../../schemas/chat.js"; // websock-actors typescript examples.chat:app

export async function chat(): Promise<void> {
  const client = connect<Protocol>("ws://127.0.0.1/");
  await client.request({type: "join", room: "lobby", nmae: "ann"}); // a misspelt field
  client.on("message", (message) => console.log(message.txt)); // a field pushes do not have
}
