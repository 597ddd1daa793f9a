// The official OpenAI client (npm `openai`) against coe serve's front door.
// openai 6 (native fetch): v4 read through node-fetch 2.7.0, which on Debian 12's nodejs
// 18.20.4+dfsg-1~deb12u3 (the CVE-2026-48931 http.Agent fix) throws "Premature close" after
// a complete chunked reply over a kept-alive connection, from Node's own http server too
// (the fresh-machine lane, 2026-12-07; reproduced with a 20-line Node server: v4 fails, v6 passes).
// Usage: node chat.mjs BASE_URL MODEL PROMPT TOOL_PROMPT API_KEY
// Prints one JSON object: a plain completion, a streamed one (with usage; `pieces`:
// the chunks that carried content), a conversation (system prompt, earlier turns)
// ending in PROMPT, a call with tools on TOOL_PROMPT, the error an unknown model gets, the listed models, the model retrieved
// (models.retrieve) and the error a wrong API key gets.
import OpenAI from 'openai';

const [baseURL, model, prompt, toolPrompt, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30000 });
const messages = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: prompt },
];

const plain = await client.chat.completions.create({ model, messages });

const stream = await client.chat.completions.create({
  model, messages, stream: true, stream_options: { include_usage: true },
});
let text = '';
let usage = null;
let coe = null;
let chunks = 0;
let pieces = 0;
let finish = null;
for await (const chunk of stream) {
  chunks++;
  const choice = chunk.choices[0];
  if (choice?.delta?.content) {
    text += choice.delta.content;
    pieces++;
  }
  if (choice?.finish_reason) finish = choice.finish_reason;
  if (chunk.usage) usage = chunk.usage;
  if (chunk.coe) coe = chunk.coe;
}

const conversation = await client.chat.completions.create({
  model,
  messages: [
    { role: 'system', content: 'You answer multiple-choice questions.' },
    { role: 'user', content: 'Which number is prime? (A) 4 (B) 7' },
    { role: 'assistant', content: 'The answer is (B).' },
    { role: 'user', content: prompt },
  ],
  temperature: 0,
  max_completion_tokens: 64,
});

const tools = [{
  type: 'function',
  function: {
    name: 'answer',
    description: 'Gives the letter of the answer',
    parameters: { type: 'object', properties: { letter: { type: 'string' } }, required: ['letter'] },
  },
}];
const called = await client.chat.completions.create({
  model, messages: [{ role: 'user', content: toolPrompt }], tools, tool_choice: 'required',
});

let error = null;
try {
  await client.chat.completions.create({ model: 'no-such-cascade', messages });
} catch (e) {
  error = { status: e.status, code: e.code, type: e.type, message: e.message };
}

const models = [];
for await (const m of client.models.list()) models.push(m.id);

const retrieved = await client.models.retrieve(model);

let wrongKey = null;
try {
  const stranger = new OpenAI({ baseURL, apiKey: apiKey + '-wrong', maxRetries: 0, timeout: 30000 });
  await stranger.chat.completions.create({ model, messages });
} catch (e) {
  wrongKey = {
    status: e.status, code: e.code, type: e.type, authentication: e instanceof OpenAI.AuthenticationError,
  };
}

console.log(JSON.stringify({
  plain: { content: plain.choices[0].message.content, usage: plain.usage, coe: plain.coe },
  stream: { content: text, usage, coe, chunks, pieces, finish },
  conversation: { content: conversation.choices[0].message.content, coe: conversation.coe },
  tools: {
    content: called.choices[0].message.content,
    calls: called.choices[0].message.tool_calls,
    finish: called.choices[0].finish_reason,
    coe: called.coe,
  },
  error,
  models,
  retrieved: { id: retrieved.id, object: retrieved.object },
  wrongKey,
}));
