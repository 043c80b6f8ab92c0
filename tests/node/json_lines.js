// One JSON object per line with Accept: application/json (fetch, as a dashboard would).
(async () => {
    const response = await fetch(process.argv[2], { headers: { Accept: 'application/json' } });
    console.log(response.headers.get('content-type'));
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    let seen = 0;
    for (;;) {
        const { value } = await reader.read();
        buffer += decoder.decode(value, { stream: true });
        let newline;
        while ((newline = buffer.indexOf('\n')) >= 0) {
            const line = buffer.slice(0, newline);
            buffer = buffer.slice(newline + 1);
            if (line === '') continue;
            console.log(JSON.parse(line).meta.offset);
            if (++seen === Number(process.argv[3])) process.exit(0);
        }
    }
})();
