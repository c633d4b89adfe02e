// Drives @google-cloud/pubsub against the emulator at PUBSUB_EMULATOR_HOST:
// creates a topic and a subscription, publishes one message, receives it,
// acks it, and prints one JSON line describing what it saw.
'use strict';
const {PubSub} = require('@google-cloud/pubsub');

async function main() {
  const pubsub = new PubSub({projectId: 'courier-node'});
  const suffix = `${process.pid}-${Date.now()}`;
  const [topic] = await pubsub.createTopic(`node-topic-${suffix}`);
  const [sub] = await topic.createSubscription(`node-sub-${suffix}`);
  const published = await topic.publishMessage({
    data: Buffer.from('hello from node'),
    attributes: {lang: 'js'},
  });
  const msg = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no message within 20s')), 20000);
    sub.on('message', m => {
      clearTimeout(timer);
      m.ack();
      resolve(m);
    });
    sub.on('error', reject);
  });
  await sub.close();
  console.log(JSON.stringify({
    published,
    id: msg.id,
    data: msg.data.toString(),
    attributes: msg.attributes,
    topic: topic.name,
    subscription: sub.name,
  }));
  await pubsub.close();
}

main().catch(err => {
  console.error(err);
  process.exit(1);
});
