//! Embeddings on request (`/v1/embeddings`, Ollama's `/api/embed`): the model is routed
//! and loaded as for a generation, and its backend must list the `embeddings` feature.
//! Vectors come back with unit length when asked (OpenAI's and Ollama's `/api/embed`
//! are; Ollama's older `/api/embeddings` is not), so a dot product is the cosine
//! similarity.

use hearth_sdk::feature;

use super::generate::ServiceError;
use super::tokens::plain;
use super::Hearth;
use crate::lifecycle::KeepAlive;
use crate::router::RouteRequest;

/// The embeddings of a list of texts, in its order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    pub model_id: String,
    pub vectors: Vec<Vec<f32>>,
    /// How many tokens the model read for all of them.
    pub tokens: u64,
}

impl Hearth {
    /// Embed each of `inputs` on the model `route` leads to; `truncate` cuts a text
    /// longer than the model reads at once instead of refusing it, and `normalize`
    /// scales each vector to unit length.
    pub async fn embed(
        &self,
        route: RouteRequest,
        keep_alive: KeepAlive,
        inputs: Vec<String>,
        truncate: bool,
        normalize: bool,
    ) -> Result<Embedded, ServiceError> {
        let prepared =
            self.prepare_listing(plain(route, keep_alive), "input", feature::EMBEDDINGS).await?;
        let model_id = prepared.model_id().to_string();
        let (vectors, tokens) = prepared
            .with_model(move |runner| {
                let mut vectors = Vec::with_capacity(inputs.len());
                let mut tokens = 0;
                for text in &inputs {
                    let embedding = runner.embed(text, truncate)?;
                    tokens += u64::from(embedding.tokens);
                    let vector = embedding.vector.into_vec();
                    vectors.push(if normalize { unit_length(vector) } else { vector });
                }
                Ok((vectors, tokens))
            })
            .await?;
        Ok(Embedded { model_id, vectors, tokens })
    }
}

/// `vector` scaled to length 1; a vector of zeros stays as it is.
fn unit_length(mut vector: Vec<f32>) -> Vec<f32> {
    let norm = vector.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    if norm > 0.0 {
        for x in &mut vector {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
    vector
}

#[cfg(test)]
mod tests {
    use super::unit_length;

    #[test]
    fn a_vector_is_scaled_to_unit_length_keeping_its_direction() {
        let scaled = unit_length(vec![3.0, 0.0, -4.0]);
        assert_eq!(scaled, vec![0.6, 0.0, -0.8]);
    }

    #[test]
    fn a_vector_of_zeros_stays_zeros_instead_of_becoming_nan() {
        assert_eq!(unit_length(vec![0.0; 4]), vec![0.0; 4]);
    }
}
