// The official OpenAI client (npm `openai`) against coe serve's front door.
// Usage: node chat.mjs BASE_URL MODEL PROMPT
// Prints one JSON object: a plain completion, a streamed one (with usage; `pieces`:
// the chunks that carried content), the error an unknown model gets, and the listed
// models.
import OpenAI from 'openai';

const [baseURL, model, prompt] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: 'not-needed', maxRetries: 0, timeout: 30000 });
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

let error = null;
try {
  await client.chat.completions.create({ model: 'no-such-cascade', messages });
} catch (e) {
  error = { status: e.status, code: e.code, type: e.type, message: e.message };
}

const models = [];
for await (const m of client.models.list()) models.push(m.id);

console.log(JSON.stringify({
  plain: { content: plain.choices[0].message.content, usage: plain.usage, coe: plain.coe },
  stream: { content: text, usage, coe, chunks, pieces, finish },
  error,
  models,
}));
