FROM node:20-slim
WORKDIR /app
COPY --chown=node:node . /app
USER node
CMD ["node", "server.js"]
