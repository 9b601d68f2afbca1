"""The encoder-decoder as one module, built from the config: its loss, and its weight initialisation."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnmt.cells import State, is_recurrent_weight
from rnnmt.config import ModelConfig
from rnnmt.decoders import Decoder, DecoderState, Memory
from rnnmt.encoders import Encoder, EncoderOutput
from rnnmt.model_folder import ModelFolder, check_weights
from rnnmt.vocabulary import PAD


class Seq2Seq(nn.Module):
    """English token ids in, Hindi logits out: the seed's encoder, a bridge, and the seed's decoder."""

    def __init__(self, config: ModelConfig, src_vocab_size: int, tgt_vocab_size: int):
        super().__init__()
        self.config = config
        self.encoder = Encoder(src_vocab_size, config)
        self.decoder = Decoder(tgt_vocab_size, config, self.encoder.output_size)
        sizes_differ = self.encoder.output_size != config.hidden_size
        self.bridge = nn.Linear(self.encoder.output_size, config.hidden_size) if sizes_differ else None
        lstm_cell = sizes_differ and config.cell == "lstm"
        self.bridge_c = nn.Linear(self.encoder.output_size, config.hidden_size) if lstm_cell else None

    def encode(self, src: Tensor, src_len: Tensor) -> tuple[EncoderOutput, Memory, DecoderState]:
        """Run the encoder and hand its last state over to the decoder (the seed's encoder step 7)."""
        encoded = self.encoder(src, src_len)
        keys = self.decoder.attention.keys(encoded.states) if self.decoder.attention else encoded.states
        memory = Memory(encoded.states, keys, encoded.mask)
        return encoded, memory, DecoderState(self.hand_over(encoded.final))

    def hand_over(self, final: State) -> State:
        """s_0 from the encoder's last h_T: layer by layer, or the top layer for every decoder layer.

        The state passes unchanged when sizes agree (the seed's model), through a linear bridge otherwise.
        """
        if isinstance(final, tuple):
            h, c = final
            return self.fit_layers(h, self.bridge), self.fit_layers(c, self.bridge_c)
        return self.fit_layers(final, self.bridge)

    def fit_layers(self, final: Tensor, bridge: nn.Linear | None) -> Tensor:
        layers = self.config.decoder_layers
        if final.size(0) != layers:
            final = final[-1:].expand(layers, -1, -1)  # layers x batch x size
        return (bridge(final) if bridge is not None else final).contiguous()

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced logits: batch x tgt_len x tgt_vocab."""
        _, memory, state = self.encode(src, src_len)
        logits, _, _ = self.decoder(tgt_in, state, memory)
        return logits


def sequence_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Summed cross-entropy over non-pad target tokens: logits batch x len x V, target batch x len.

    The logits keep their dtype: under bf16 autocast, log-softmax and its backward run on the bf16 logits
    (several times faster than through an fp32 copy, benchmarks/README.md, and no fp32 batch x len x V is held
    for the backward); each token's loss is still summed in fp32.
    """
    per_token = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=PAD,
                                label_smoothing=label_smoothing, reduction="none")  # batch * len
    return per_token.float().sum()


def init_weights(model: nn.Module, scheme: str, scale: float) -> None:
    """Initialise the weights (the seed's step 5), as documented in the reference config.

    ``xavier``: Glorot-uniform matrices and embeddings; each recurrent (W) block orthogonal so a tanh RNN
    neither explodes nor vanishes at the start; biases zero, except an LSTM's forget gate at 1.
    ``uniform``: everything uniform in [-scale, scale] (Sutskever et al., 2014). ``pytorch``: torch's defaults.
    """
    if scheme == "pytorch":
        return
    with torch.no_grad():
        for name, param in model.named_parameters():
            if scheme == "uniform":
                nn.init.uniform_(param, -scale, scale)
            elif param.dim() == 1 or name.endswith("h0"):
                nn.init.zeros_(param)
            elif is_recurrent_weight(name):
                for block in param.split(param.size(1), dim=0):  # one block per gate
                    nn.init.orthogonal_(block)
            else:
                nn.init.xavier_uniform_(param)
        for module in model.modules():
            if isinstance(module, nn.LSTM) and scheme != "uniform":
                for name, param in module.named_parameters():
                    if name.startswith("bias_ih"):
                        param[module.hidden_size : 2 * module.hidden_size] = 1.0
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight[module.padding_idx] = 0.0


def build_model(config: ModelConfig, src_vocab_size: int, tgt_vocab_size: int, folder: ModelFolder | None = None
                ) -> Seq2Seq:
    """A model for the config: freshly initialised, or holding the weights of a model folder."""
    model = Seq2Seq(config, src_vocab_size, tgt_vocab_size)
    if folder is None:
        init_weights(model, config.init, config.init_scale)
        return model
    check_weights(folder.path, {name: tuple(t.shape) for name, t in model.state_dict().items()}, folder.weights)
    model.load_state_dict({name: torch.from_numpy(array) for name, array in folder.weights.items()})
    return model


def quantize(model: Seq2Seq, precision: str) -> Seq2Seq:
    """The model for CPU inference at ``precision``: unchanged for fp32; for int8, its layers swapped in place.

    int8 is dynamic quantisation: every linear and recurrent layer keeps int8 weights and quantises its
    input on the fly (fbgemm kernels), about 4 times less memory to read per decoder step. The swap is in
    place, so the fp32 weights are freed rather than copied.
    """
    if precision == "fp32":
        return model
    if precision != "int8":
        raise ValueError(f"search.precision is {precision!r}; allowed values: fp32, int8")
    with warnings.catch_warnings():  # torch.ao's eager quantisation works in torch 2.13 but warns of its move
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear, nn.GRU, nn.LSTM}, dtype=torch.qint8,
                                                      inplace=True)
