"""The worker's HTTP side: ``views`` (routes), ``service`` (what they answer, with I/O), and the
pure pieces it is made of: ``inputs`` (request validation), ``totals`` (sums), ``metrics``
(Prometheus text) and the dashboard page."""
