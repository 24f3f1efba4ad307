1767225600
v0=c2610528e5a6adc342c722c23994ec1b8e5b305229d568eab068c3f50eefa0b2
payload=%7B%22type%22%3A+%22block_actions%22%2C+%22user%22%3A+%7B%22id%22%3A+%22UJAKE%22%7D%2C+%22actions%22%3A+%5B%7B%22action_id%22%3A+%22approve%22%2C+%22value%22%3A+%229ae7b0ed-4d8e-4b79-b87e-dafad2370e48%22%7D%5D%2C+%22response_url%22%3A+%22http%3A%2F%2F127.0.0.1%3A9%2Fresponse%2Fa%22%7D