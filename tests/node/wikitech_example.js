// The browser/Node example of wikitech's "Event Platform/EventStreams" page, as written there
// but for the URL and the server name.
const { EventSource } = require('eventsource');

const url = process.argv[2];

console.log(`Connecting to EventStreams at ${url}`);
const eventSource = new EventSource(url);

eventSource.onopen = () => {
    console.info('Opened connection.');
};
eventSource.onerror = (event) => {
    console.error('Encountered error', event);
};
eventSource.onmessage = (event) => {
    // event.data will be a JSON message
    const data = JSON.parse(event.data);
    // discard all canary events
    if (data.meta.domain === 'canary') {
        return;
    }
    // Edits from English Wikipedia
    if (data.server_name === 'wiki.example') {
        // Output the title of the edited page
        console.log(data.title);
    }
};
