"""What the tests share, one module each:

- `services`: the shared services' addresses (PostgreSQL, Redis, RabbitMQ, the S3 test
  login) and free or closed ports;
- `waits`: `wait_for`, the one way a test waits for something to become true;
- `required`: a missing component fails the run under CI instead of skipping;
- `signing`: GME and CSS callback signatures, made by recpipe's own signing code;
- `stack`: recpipe as processes (webhook, worker, beat) and a notification receiver;
- `recordings`: GME recordings of tones, their callbacks, uploads and archive checks;
- `css`: CSS callbacks and archived files;
- `media`: tones, video and HLS made with ffmpeg, and what is heard in a file;
- `faults`: servers a test stops, cuts or slows (PostgreSQL, Redis, a TCP proxy);
- `hosts`: recpipe as separate hosts in network namespaces;
- `hostile`: clients and servers that misbehave on purpose;
- `metrics`: samples read out of Prometheus text;
- `console`: people, sign-in and stored recordings for the console's tests;
- `lifecycle`: the table of GME event sequences and the states they end in;
- `cli`: `recpipe` run as a command against a test ledger and broker.
"""
